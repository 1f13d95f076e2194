"""Train a variational autoencoder and measure it in nats.

    python VAE/train.py --epochs 50                   # MLP VAE on MNIST (downloaded to data/)
    python VAE/train.py --arch conv --latent-dim 2    # conv VAE: scatter and manifold pictures
    python VAE/train.py --dataset cifar10 --arch conv --likelihood gaussian
    python VAE/train.py --arch conv --validation      # choose settings on held-out training images
    python VAE/train.py --resume VAE/results/mnist-mlp-z20/checkpoint.pt --epochs 100

Everything goes to --out (default VAE/results/<run name>, named as run_name below says):
    log.csv              one row per epoch: train loss parts, test -ELBO in nats per image (for
                         MNIST at 32x32 also over the original 28x28 area, the figure papers quote),
                         time; with --validation, val_* columns in place of test_*
    checkpoint.pt        model, optimizer, epoch, flags and random states, written every epoch
    reconstructions.png  fixed test images (top rows) and their reconstructions (bottom rows)
    frames/samples_NNN.png, samples.png, training.gif   decoded from one fixed z, every epoch
    loss_curves.png      train loss and test -ELBO per epoch
    interpolation.png, traversal.png, posterior_samples.png
    latent_2d.png and manifold.png (2-D latent), or latent_tsne.png / latent_pca.png (labelled data)
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any directory

import torch

from common.blocks import num_halvings
from common.data import (DEFAULT_IMAGE_SIZE, Batches, load_dataset, original_area,
                         split_training_set)
from common.distributed import (data_parallel, describe_batch, join_process_group,
                                main_process_first, mean_over_processes, share_random_state)
from common.pictures import save_curves, save_grid, save_training_gif
from common.run import (NON_NEGATIVE, POSITIVE, FlagParser, add_shared_flags, autocast,
                        check_finite, checkpoint_state, choose_device, create_run_folder,
                        finish_run, lr_factor, print_progress, restore_run, run_training,
                        save_epoch, seed_everything, speed_flags_for, start_run)
from VAE.model import VAE, binarize_once
from VAE.report import describe, draw_latent_figures, evaluate

HERE = Path(__file__).resolve().parent


def main():
    run_training(train, make_parser())


def make_parser():
    parser = FlagParser(description="Train a VAE.")
    add_shared_flags(parser, HERE, epochs=10, batch_size=128, lr=1e-3, latent_dim=20)
    flag = parser.add_argument
    flag("--arch", default="mlp", choices=["mlp", "conv"], help="784-400-latent MLP or conv blocks")
    flag("--beta", type=float, default=1.0, help="weight of the KL term")
    flag("--recon-weight", type=float, default=1.0, metavar="W", help="weight of -log p(x|z)")
    flag("--likelihood", default="bernoulli", choices=["bernoulli", "gaussian"],
         help="p(x|z); gaussian for RGB photos")
    flag("--binarize", action="store_true", help="x ~ Bernoulli(pixels), for an NLL")
    flag("--width", type=int, default=32, metavar="N", help="conv: channels of the widest layers")
    flag("--decoder-depth", type=int, default=1, metavar="N", help="conv: convs per resolution")
    flag("--validation", action="store_true", help="score held-out training images")
    flag("--embedding", default="tsne", choices=["tsne", "pca"], help="2-D view of a larger latent")
    return parser


def run_name(args):
    """<dataset>-<arch>-z<latent>, then a suffix for each flag that differs from its default."""
    conv = args.arch == "conv"
    suffixes = {f"-w{args.width}": conv and args.width != 32,
                f"-d{args.decoder_depth}": conv and args.decoder_depth != 1,
                "-binarized": args.binarize, "-cosine": args.lr_schedule == "cosine",
                "-val": args.validation}
    return f"{args.dataset}-{args.arch}-z{args.latent_dim}" + "".join(
        suffix for suffix, wanted in suffixes.items() if wanted)


def train(args):
    """Train as the flags say; returns the trained model (in every process, under torchrun)."""
    args, checkpoint, out = start_run(args, "VAE", HERE / "results" / run_name(args), ranges={
        "beta": NON_NEGATIVE, "recon_weight": NON_NEGATIVE, "width": POSITIVE,
        "decoder_depth": POSITIVE}, free=("embedding",))
    device, rank, world_size = join_process_group(choose_device(args.device))
    main_process = rank == 0  # the one that prints, draws and writes
    memory_format = speed_flags_for(args, device)
    seed_everything(args.seed)  # the same in every process: the same weights, one random stream

    if args.arch == "mlp" and args.dataset in ("mnist", "fashion-mnist"):
        args.image_size = args.image_size or 28  # the paper's 784-400 MLP: MNIST without padding
    if args.arch == "conv":  # a size the conv blocks cannot halve is refused before any decoding
        num_halvings(args.image_size or DEFAULT_IMAGE_SIZE.get(args.dataset, 32))
    with main_process_first(world_size):  # one download, one cache
        train_images, train_labels = load_dataset(args.dataset, args.data_root, args.image_size)
        test_images, test_labels = load_dataset(args.dataset, args.data_root, args.image_size,
                                                train=False)
    held_out = "val" if args.validation else "test"
    if args.validation:  # settings are chosen on held-out training images, never on the test set
        (train_images, train_labels), (test_images, test_labels) = \
            split_training_set(train_images, train_labels)
    if args.binarize:
        test_images = binarize_once(test_images)
    area = original_area(args.dataset, test_images.shape[-1])  # MNIST: the 28x28 inside the padding
    model_config = dict(image_shape=list(train_images.shape[1:]), latent_dim=args.latent_dim,
                        arch=args.arch, likelihood=args.likelihood, beta=args.beta,
                        recon_weight=args.recon_weight, base_channels=args.width,
                        decoder_depth=args.decoder_depth)
    model = VAE(**model_config).to(device, memory_format=memory_format)
    model.init_output_bias(train_images)
    # fused: one kernel updates every parameter, instead of a loop of small kernels per tensor
    optimizer = torch.optim.Adam(model.parameters(), args.lr, fused=device.type in ("cpu", "cuda"))
    if args.compile:
        model.compile()
    loss_of = data_parallel(model, model.loss, world_size)  # averages gradients under torchrun
    batches = Batches(train_images.to(device), None, args.batch_size, seed=args.seed, rank=rank,
                      world_size=world_size)
    test_images = test_images.to(device)
    fixed_test = next(iter(Batches(test_images, None, 16, shuffle=False, drop_last=False)))[0]
    fixed_z = torch.randn(64, args.latent_dim, generator=torch.Generator().manual_seed(args.seed))
    fixed_z = fixed_z.to(device)
    if main_process:
        create_run_folder(out)
        print(f"VAE ({args.arch}, {sum(p.numel() for p in model.parameters()):,} parameters) on "
              f"{args.dataset} {tuple(train_images.shape[1:])}: {len(train_images)} train / "
              f"{len(test_images)} {held_out} images, "
              f"{describe_batch(args.batch_size, world_size)}, device {device}, writing to {out}")
    start_epoch, log_rows = restore_run(checkpoint, args.resume, model, {"optimizer": optimizer},
                                        batches)

    for epoch in range(start_epoch, args.epochs + 1):
        # ---- train one epoch ----
        model.train()
        sums = {"total": 0.0, "recon": 0.0, "kl": 0.0}
        started = last_report = time.time()
        for step, (x, _) in enumerate(batches, 1):
            x = x.contiguous(memory_format=memory_format)
            # Each process draws the whole batch's noise and keeps its own rows, as one would
            if args.binarize:  # x ~ Bernoulli(pixels)
                draw = batches.shard(torch.rand(args.batch_size, *x.shape[1:], device=device))
                x = (draw < x).to(x.dtype)
            noise = batches.shard(torch.randn(args.batch_size, args.latent_dim, device=device))
            with autocast(args.amp):
                # loss = recon_weight * -log p(x|z) + beta * KL(q(z|x) || p(z)),  nats per image
                losses = loss_of(x, noise)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.param_groups[0]["lr"] = args.lr * lr_factor(args, epoch, step, len(batches))
            optimizer.step()
            for name in sums:  # stays on the device: no GPU sync per step
                sums[name] += losses[name].detach()
            if time.time() - last_report > 10 or step == len(batches):  # .item() waits for the GPU
                last_report, means = time.time(), {k: v.item() / step for k, v in sums.items()}
                check_finite({"train loss": means["total"]}, epoch, out, step)
                if main_process:
                    print_progress(epoch, args.epochs, step, len(batches), args.batch_size,
                                   started, means)
        seconds = time.time() - started
        train_parts = {name: float(value) / len(batches)
                       for name, value in mean_over_processes(sums, world_size).items()}
        if not main_process:  # rank 0 alone evaluates, draws and writes; the rest wait for it
            share_random_state(world_size, device)
            continue

        # ---- evaluate: -ELBO = -log p(x|z) + KL, nats per held-out image ----
        model.eval()
        test_parts = evaluate(model, test_images, args.batch_size, area)
        check_finite({f"{held_out} {k}": v for k, v in test_parts.items()}, epoch, out)
        speed = len(batches) * args.batch_size / seconds  # images per second
        print(f"epoch {epoch}/{args.epochs} | train loss {train_parts['total']:.2f} (recon "
              f"{train_parts['recon']:.2f}, KL {train_parts['kl']:.2f}) | {held_out} "
              f"{describe(test_parts)} | {seconds:.1f} s, {speed:,.0f} img/s")

        # ---- pictures: reconstructions of fixed test images, samples from a fixed z ----
        grid = torch.cat([fixed_test, model.reconstruct(fixed_test)])  # originals above
        save_grid(grid, out / "reconstructions.png", nrow=8)
        save_grid(model.sample(z=fixed_z), out / "frames" / f"samples_{epoch:03d}.png", nrow=8)

        # ---- log row and checkpoint ----
        parts = {**{f"train_{k}": v for k, v in train_parts.items()},
                 **{f"{held_out}_{k}": v for k, v in test_parts.items()}}
        log_rows.append({"epoch": epoch, **{name: f"{value:.4f}" for name, value in parts.items()},
                         "seconds": f"{seconds:.2f}", "images_per_second": f"{speed:.0f}"})
        save_epoch(out, checkpoint_state("VAE", model, model_config, {"optimizer": optimizer},
                                         epoch, args, batches), log_rows)
        share_random_state(world_size, device)

    # ---- end of run (rank 0): every file rewritten whole, so a cut-short end can run again ----
    if not main_process:
        return model
    save_training_gif(out, "samples", last_frame=out / "samples.png")
    save_curves(out / "loss_curves.png", {
        "train loss": [float(row["train_total"]) for row in log_rows],
        f"{held_out} -ELBO": [float(row[f"{held_out}_neg_elbo"]) for row in log_rows]},
        title=f"train loss and {held_out} -ELBO", y_label="nats per image")
    draw_latent_figures(model, test_images, test_labels, out, args.embedding)
    finish_run(out)
    print(f"done: figures, log.csv and checkpoint.pt in {out}")
    return model


if __name__ == "__main__":
    main()
