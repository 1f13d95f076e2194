"""Train a variational autoencoder and measure it in nats.

    python VAE/train.py --epochs 50                          # MLP VAE on MNIST (downloaded to data/ if missing)
    python VAE/train.py --arch conv --latent-dim 2           # conv VAE with a 2-D latent: scatter and manifold pictures
    python VAE/train.py --dataset cifar10 --arch conv --likelihood gaussian
    python VAE/train.py --arch conv --lr-schedule cosine --validation   # choose settings on held-out training images
    python VAE/train.py --resume VAE/results/mnist-mlp-z20/checkpoint.pt --epochs 100

Everything goes to --out (default VAE/results/<dataset>-<arch>-z<latent>[-w<width>][-d<depth>][-binarized][-cosine][-val]/):
    log.csv               one row per epoch: train loss parts, test -ELBO (nats per image; for MNIST at
                          32x32 also over the original 28x28 area, the figure papers quote), time;
                          --validation: the -ELBO of the last 10,000 training images (val_*), for choosing settings
    checkpoint.pt         model, optimizer, epoch, args and random states, rewritten atomically each epoch
    reconstructions.png   fixed test images (top rows) and their reconstructions (bottom rows)
    frames/samples_NNN.png, samples.png, training.gif    decoded from a fixed z, every epoch
    loss_curves.png       train loss and test -ELBO per epoch
    interpolation.png, traversal.png, posterior_samples.png
    latent_2d.png / latent_tsne.png / latent_pca.png, manifold.png (2-D latent)   for labelled data
"""
import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any working directory

import torch
from torchvision.utils import save_image

from common.data import Batches, load_dataset, original_area, split_training_set
from common.figures import interpolation_pairs, pca, save_curves, save_scatter, save_training_gif, tsne
from common.utils import (NON_NEGATIVE, POSITIVE, add_shared_flags, autocast, checkpoint_state, choose_device,
                          create_run_folder, data_parallel, describe_batch, join_process_group, lr_factor,
                          main_process_first, mean_over_processes, print_progress, restore_run, run_training,
                          save_epoch, seed_everything, share_random_state, speed_flags_for, start_run, stopped_by)
from VAE.model import VAE, binarize_once

HERE = Path(__file__).resolve().parent


def main():
    run_training(train, make_parser().parse_args())


def make_parser():
    parser = argparse.ArgumentParser(description="Train a VAE.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_shared_flags(parser, HERE, epochs=10, batch_size=128, lr=1e-3, latent_dim=20)
    parser.add_argument("--arch", default="mlp", choices=["mlp", "conv"],
                        help="mlp: 784-400-latent on MNIST (28x28 unless --image-size says otherwise); conv: DownBlocks/UpBlocks")
    parser.add_argument("--beta", type=float, default=1.0, help="weight of the KL term (0: no KL term)")
    parser.add_argument("--recon-weight", type=float, default=1.0, help="weight of -log p(x|z) (0: KL term only)")
    parser.add_argument("--likelihood", default="bernoulli", choices=["bernoulli", "gaussian"],
                        help="p(x|z): Bernoulli (binary cross-entropy) or Gaussian with a learned sigma (RGB photos)")
    parser.add_argument("--binarize", action="store_true",
                        help="dynamic binarization: train on x ~ Bernoulli(pixels), test on one fixed binarization")
    parser.add_argument("--embedding", default="tsne", choices=["tsne", "pca"],
                        help="how a latent of more than 2 dimensions is drawn in 2-D")
    parser.add_argument("--width", type=int, default=32, help="conv: channels of the largest feature maps")
    parser.add_argument("--decoder-depth", type=int, default=1,
                        help="conv: layers per resolution in the decoder (1: the encoder's mirror; each more adds a 3x3 conv)")
    parser.add_argument("--validation", action="store_true",
                        help="for choosing settings: hold out the last 10,000 training images and score them "
                             "(log columns val_*) in place of the test set")
    return parser


def train(args):
    """Train as the flags say; returns the trained model (in every process, under torchrun)."""
    conv_shape = f"-w{args.width}" if args.arch == "conv" and args.width != 32 else ""
    conv_shape += f"-d{args.decoder_depth}" if args.arch == "conv" and args.decoder_depth != 1 else ""
    run_name = (f"{args.dataset}-{args.arch}-z{args.latent_dim}{conv_shape}{'-binarized' if args.binarize else ''}"
                f"{'-cosine' if args.lr_schedule == 'cosine' else ''}{'-val' if args.validation else ''}")
    args, checkpoint, out = start_run(args, "VAE", HERE / "results" / run_name,
                                      ranges={"beta": NON_NEGATIVE, "recon_weight": NON_NEGATIVE, "width": POSITIVE,
                                              "decoder_depth": POSITIVE})
    device, rank, world_size = join_process_group(choose_device(args.device))  # (device, 0, 1) without torchrun
    main_process = rank == 0  # the one that prints, draws and writes
    memory_format = speed_flags_for(args, device)
    seed_everything(args.seed)  # the same seed in every process: the same weights, one shared random stream

    if args.image_size is None and args.arch == "mlp" and args.dataset in ("mnist", "fashion-mnist"):
        args.image_size = 28  # the 784-400-latent MLP of the paper: the 32x32 padding is for the conv models
    with main_process_first(world_size):  # one download, one cache
        train_images, train_labels = load_dataset(args.dataset, args.data_root, args.image_size, train=True)
        test_images, test_labels = load_dataset(args.dataset, args.data_root, args.image_size, train=False)
    held_out = "test"
    if args.validation:  # settings are chosen on training images held out, so the test figure stays a test figure
        held_out = "val"
        (train_images, train_labels), (test_images, test_labels) = split_training_set(train_images, train_labels)
    if args.binarize:
        test_images = binarize_once(test_images)
    model_config = dict(image_shape=list(train_images.shape[1:]), latent_dim=args.latent_dim, arch=args.arch,
                        likelihood=args.likelihood, beta=args.beta, recon_weight=args.recon_weight,
                        base_channels=args.width, decoder_depth=args.decoder_depth)
    model = VAE(**model_config).to(device, memory_format=memory_format)
    pixel_means = sum(chunk.sum(0, dtype=torch.float64) for chunk in train_images.split(4096)) / (255 * len(train_images))
    model.init_output_bias(pixel_means.to(device))
    # The fused kernel updates all parameters in one pass: on CPU the MLP epoch takes about 25% less time
    # (1.83 s against 2.39 s on an earlier machine, timed by the VAE/benchmark.py of commit 2b3eb71).
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, fused=device.type in ("cpu", "cuda"))
    if args.compile:
        model.compile()
    loss_of = data_parallel(model, model.loss, world_size)  # model.loss, averaging gradients under torchrun
    batches = Batches(train_images.to(device), None, args.batch_size, seed=args.seed, rank=rank, world_size=world_size)
    test_images = test_images.to(device)
    fixed_test = next(iter(Batches(test_images, None, 16, shuffle=False, drop_last=False)))[0]
    fixed_z = torch.randn(64, args.latent_dim, generator=torch.Generator().manual_seed(args.seed)).to(device)
    if main_process:
        create_run_folder(out)
        print(f"VAE ({args.arch}, {sum(p.numel() for p in model.parameters()):,} parameters) on {args.dataset} "
              f"{tuple(train_images.shape[1:])}: {len(train_images)} train / {len(test_images)} {held_out} images, "
              f"{describe_batch(args.batch_size, world_size)}, device {device}, writing to {out}")

    start_epoch, log_rows = (1, []) if checkpoint is None else \
        restore_run(checkpoint, args.resume, model, {"optimizer": optimizer}, batches)

    for epoch in range(start_epoch, args.epochs + 1):
        # ---- train one epoch ----
        model.train()
        sums = {"total": 0.0, "recon": 0.0, "kl": 0.0}
        started = last_report = time.time()
        for step, (x, _) in enumerate(batches, 1):
            x = x.contiguous(memory_format=memory_format)
            # Each process draws the random numbers of the whole batch and keeps its own rows (batches.shard):
            # no two processes share noise, and together they draw what a single process would.
            if args.binarize:  # x ~ Bernoulli(pixels)
                x = (batches.shard(torch.rand(args.batch_size, *x.shape[1:], device=device)) < x).to(x.dtype)
            noise = batches.shard(torch.randn(args.batch_size, args.latent_dim, device=device))
            with autocast(args.amp):
                losses = loss_of(x, noise)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.param_groups[0]["lr"] = args.lr * lr_factor(args, epoch, step, len(batches))
            optimizer.step()
            for name in sums:  # stays on the device: no GPU sync per step
                sums[name] += losses[name].detach()
            if time.time() - last_report > 10 or step == len(batches):  # .item() waits for the GPU: not every step
                last_report = time.time()
                if not math.isfinite(sums["total"].item()):
                    raise stopped_by({"train loss": sums["total"].item() / step}, epoch, out, step)
                if main_process:
                    print_progress(epoch, args.epochs, step, len(batches), args.batch_size, started,
                                   {name: value.item() / step for name, value in sums.items()})
        seconds = time.time() - started
        train_parts = {name: float(value) / len(batches) for name, value in mean_over_processes(sums, world_size).items()}
        if not main_process:  # rank 0 alone evaluates, draws and writes; the rest wait for its random state
            share_random_state(world_size, device)
            continue

        # ---- evaluate: -ELBO = -log p(x|z) + KL, nats per test image ----
        model.eval()
        test_parts = evaluate(model, test_images, args.batch_size, original_area(args.dataset, test_images.shape[-1]))
        if not all(map(math.isfinite, test_parts.values())):  # never checkpoint a model that scores NaN
            raise stopped_by({f"{held_out} {name}": value for name, value in test_parts.items()}, epoch, out)
        print(f"epoch {epoch}/{args.epochs} | train loss {train_parts['total']:.2f} "
              f"(recon {train_parts['recon']:.2f}, KL {train_parts['kl']:.2f}) | {held_out} -ELBO {test_parts['neg_elbo']:.2f} "
              + "".join(f"({value:.2f} over {name.removeprefix('neg_elbo_')}) " for name, value in test_parts.items()
                        if name.startswith("neg_elbo_"))
              + f"nats | {seconds:.1f} s, {len(batches) * args.batch_size / seconds:,.0f} img/s")

        # ---- pictures: reconstructions of fixed test images, samples from a fixed z ----
        with torch.no_grad():
            reconstructions = model.mean_image(model.decode(model.encode(fixed_test)[0]))
            save_image(torch.cat([fixed_test, reconstructions]), out / "reconstructions.png", nrow=8)
            save_image(model.sample(z=fixed_z), out / "frames" / f"samples_{epoch:03d}.png", nrow=8)

        # ---- log row and checkpoint ----
        log_rows.append({"epoch": epoch, **{f"train_{k}": f"{v:.4f}" for k, v in train_parts.items()},
                         **{f"{held_out}_{k}": f"{v:.4f}" for k, v in test_parts.items()},
                         "seconds": f"{seconds:.2f}", "images_per_second": f"{len(batches) * args.batch_size / seconds:.0f}"})
        save_epoch(out, checkpoint_state("VAE", model, model_config, {"optimizer": optimizer}, epoch, args, batches),
                   log_rows)
        share_random_state(world_size, device)

    # ---- end of run: figures (rank 0) ----
    if not main_process:
        return model
    save_training_gif(out, "samples", last_frame=out / "samples.png")
    save_curves(out / "loss_curves.png", {"train loss": [float(r["train_total"]) for r in log_rows],
                                          f"{held_out} -ELBO": [float(r[f"{held_out}_neg_elbo"]) for r in log_rows]},
                title=f"train loss and {held_out} -ELBO", y_label="nats per image")
    draw_latent_figures(model, test_images, test_labels, out, args.embedding)
    print(f"done: figures, log.csv and checkpoint.pt in {out}")
    return model


@torch.no_grad()
def evaluate(model, images, batch_size, area=slice(None)):
    """Mean test loss parts in nats per image and the unweighted -ELBO = recon + KL; when `area` is a part of
    the image (MNIST's 28x28 inside the padding), also the -ELBO of that part, as neg_elbo_<H>x<W>."""
    totals = {"recon": 0.0, "kl": 0.0, "recon_area": 0.0}
    for x, _ in Batches(images, None, batch_size, shuffle=False, drop_last=False):
        decoded, mu, logvar = model(x)
        totals["recon"] -= model.log_px_given_z(x, decoded).sum().item()
        totals["recon_area"] -= model.log_px_given_z(x[..., area, area], decoded[..., area, area]).sum().item()
        totals["kl"] += model.kl_divergence(mu, logvar).sum().item()
    means = {name: value / len(images) for name, value in totals.items()}
    parts = {"recon": means["recon"], "kl": means["kl"], "neg_elbo": means["recon"] + means["kl"]}
    height, width = images[0, 0, area, area].shape
    if height * width < images[0, 0].numel():
        parts[f"neg_elbo_{height}x{width}"] = means["recon_area"] + means["kl"]
    return parts


@torch.no_grad()
def draw_latent_figures(model, test_images, test_labels, out, embedding, points=2000):
    model.eval()
    x = next(iter(Batches(test_images, None, points, shuffle=False, drop_last=False)))[0]
    mu, logvar = model.encode(x)
    labels = test_labels[:len(x)] if test_labels is not None else torch.zeros(len(x), dtype=torch.int64)

    # Interpolation: 8 pairs of test images (labelled: class r to class r + 5), 10 steps between their means.
    pairs = interpolation_pairs(labels)
    steps = torch.linspace(0, 1, 10, device=mu.device).view(1, 10, 1)
    path = mu[[a for a, _ in pairs]].unsqueeze(1) * (1 - steps) + mu[[b for _, b in pairs]].unsqueeze(1) * steps
    save_image(model.sample(z=path.flatten(0, 1)), out / "interpolation.png", nrow=10)

    # Traversal: one test image's mean, one latent dimension per row swept from -3 to 3.
    dims = min(model.latent_dim, 10)
    z = mu[0].repeat(dims, 11, 1)                                     # (dims, 11, latent)
    z[torch.arange(dims), :, torch.arange(dims)] = torch.linspace(-3, 3, 11, device=mu.device)
    save_image(model.sample(z=z.flatten(0, 1)), out / "traversal.png", nrow=11)

    # q(z|x) around one test image: the original first, then 63 decoded samples z ~ q(z|x).
    z = model.reparameterize(mu[:1].expand(63, -1), logvar[:1].expand(63, -1))
    save_image(torch.cat([x[:1], model.sample(z=z)]), out / "posterior_samples.png", nrow=8)

    if test_labels is None:
        return
    if model.latent_dim == 2:
        save_scatter(out / "latent_2d.png", mu.cpu(), labels.cpu(), title="test-set means of q(z|x)", x_label="z1",
                     y_label="z2")
        # The 2-D manifold: decode a 20x20 grid of Gaussian quantiles, so the grid covers the prior evenly.
        quantiles = torch.distributions.Normal(0, 1).icdf(torch.linspace(0.03, 0.97, 20))
        grid = torch.stack(torch.meshgrid(quantiles.flip(0), quantiles, indexing="ij"), -1).flip(-1).view(-1, 2)
        save_image(model.sample(z=grid.to(mu.device)), out / "manifold.png", nrow=20)
    else:
        flat = tsne(mu.cpu()) if embedding == "tsne" else pca(mu.cpu())
        save_scatter(out / f"latent_{embedding}.png", flat, labels.cpu(), title=f"{embedding} of test-set means of q(z|x)",
                     x_label=f"{embedding} 1", y_label=f"{embedding} 2")


if __name__ == "__main__":
    main()
