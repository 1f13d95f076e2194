"""Train an autoencoder and compare its reconstruction error with PCA's on the same images.

    python AE/train.py --epochs 50                                   # linear-bottleneck AE, 16 codes, MNIST
    python AE/train.py --latent-dim 2 --epochs 50                    # 2-D codes: scatter and manifold pictures
    python AE/train.py --arch conv                                   # fully convolutional (code: 128 x 4 x 4)
    python AE/train.py --code-activation sigmoid --latent-dim 2      # codes squashed into (0, 1)
    python AE/train.py --code-l2 0.01                                # unbounded codes pulled toward 0

The figure that matters is the test MSE per pixel (over the original 28x28 area for MNIST, without the
padding), beside PCA with as many components as the code has, fitted on the same training images. A code
with at least as many numbers as the image has pixels (the conv AE's 2,048 for 32x32 MNIST) is
overcomplete: PCA with that many components is the identity, so no PCA figure is given for it.

Everything goes to --out (default AE/results/<dataset>-linear-n<latent>[-cosine]/ or <dataset>-conv[-cosine]/):
    log.csv               one row per epoch: train loss parts, test MSE per pixel, PCA's MSE per pixel
                          (empty for an overcomplete code), time
    checkpoint.pt         model (with the Gaussian fitted to its training codes), optimizer, epoch, args, random states
    reconstructions.png   fixed test images (top rows) and their reconstructions (bottom rows)
    frames/reconstructions_NNN.png, training.gif     the reconstruction grid, epoch by epoch
    loss_curves.png       test MSE per pixel (against PCA's)
    samples.png           decoded codes drawn from a Gaussian fitted to the training codes
    interpolation.png     decoded straight lines between the codes of two test images
    codes_tsne.png / codes_pca.png, or codes_2d.png and manifold.png for a 2-D code     for labelled data
"""
import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any working directory

import torch
from torchvision.utils import save_image

from common.data import Batches, load_dataset, original_area
from common.figures import interpolation_pairs, pca, save_curves, save_scatter, save_training_gif, tsne
from common.utils import (NON_NEGATIVE, add_shared_flags, autocast, checkpoint_state, choose_device,
                          create_run_folder, data_parallel, describe_batch, join_process_group, lr_factor,
                          main_process_first, mean_over_processes, print_progress, restore_run, run_training,
                          save_epoch, seed_everything, share_random_state, speed_flags_for, start_run, stopped_by)
from AE.model import PCA, make_autoencoder

HERE = Path(__file__).resolve().parent


def main():
    run_training(train, make_parser().parse_args())


def make_parser():
    parser = argparse.ArgumentParser(description="Train an autoencoder.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_shared_flags(parser, HERE, epochs=50, batch_size=128, lr=1e-3, latent_dim=16)
    parser.add_argument("--arch", default="linear", choices=["linear", "conv"],
                        help="linear: conv trunk with a --latent-dim linear bottleneck; conv: no linear layers")
    parser.add_argument("--code-activation", default="none", choices=["none", "sigmoid"],
                        help="sigmoid squeezes every code into (0, 1)")
    parser.add_argument("--code-l2", type=float, default=0.0, help="weight W of W * ||z||^2 in the loss")
    parser.add_argument("--loss", default="bce", choices=["bce", "mse"], help="reconstruction loss")
    parser.add_argument("--embedding", default="tsne", choices=["tsne", "pca"],
                        help="how codes of more than 2 dimensions are drawn in 2-D")
    return parser


def train(args):
    """Train as the flags say; returns the trained model (in every process, under torchrun)."""
    run_name = f"{args.dataset}-linear-n{args.latent_dim}" if args.arch == "linear" else f"{args.dataset}-conv"
    run_name += "-cosine" if args.lr_schedule == "cosine" else ""
    args, checkpoint, out = start_run(args, "AE", HERE / "results" / run_name, ranges={"code_l2": NON_NEGATIVE})
    device, rank, world_size = join_process_group(choose_device(args.device))  # (device, 0, 1) without torchrun
    main_process = rank == 0  # the one that prints, draws and writes
    memory_format = speed_flags_for(args, device)
    seed_everything(args.seed)  # the same seed in every process: the same weights

    with main_process_first(world_size):  # one download, one cache
        train_images, train_labels = load_dataset(args.dataset, args.data_root, args.image_size, train=True)
        test_images, test_labels = load_dataset(args.dataset, args.data_root, args.image_size, train=False)
    model_config = dict(arch=args.arch, image_shape=list(train_images.shape[1:]), code_dim=args.latent_dim,
                        code_activation=args.code_activation, code_l2=args.code_l2, recon_loss=args.loss)
    model = make_autoencoder(**model_config).to(device, memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, fused=device.type in ("cpu", "cuda"))
    if args.compile:
        model.compile()
    loss_of = data_parallel(model, model.loss, world_size)  # model.loss, averaging gradients under torchrun
    batches = Batches(train_images.to(device), None, args.batch_size, seed=args.seed, rank=rank, world_size=world_size)
    test_images = test_images.to(device)
    fixed_test = next(iter(Batches(test_images, None, 16, shuffle=False, drop_last=False)))[0]
    area = original_area(args.dataset, train_images.shape[-1])
    code_size = math.prod(model.code_shape)
    if main_process:
        create_run_folder(out)
        print(f"{type(model).__name__} ({sum(p.numel() for p in model.parameters()):,} parameters, code of {code_size}) "
              f"on {args.dataset} {tuple(train_images.shape[1:])}, {describe_batch(args.batch_size, world_size)}, "
              f"device {device}, writing to {out}")
    if args.code_activation == "sigmoid" and args.code_l2 > 0 and main_process:
        print("warning: --code-l2 pulls sigmoid codes toward 0, the end where the sigmoid saturates and passes "
              "almost no gradient; use it with --code-activation none")

    # The baseline: PCA with as many components as the code has numbers, on the same (flattened) images;
    # above 4,096 pixels (64x64 RGB) on the first 20,000 of them, to bound the memory PCA.fit needs.
    pixels = math.prod(train_images.shape[1:])
    pca_mse = None
    if code_size < pixels and main_process:
        started = time.time()
        pca_model = PCA(code_size).fit(train_images[:20_000 if pixels > 4096 else None].flatten(1) / 255)
        pca_mse = mse_per_pixel(lambda x: pca_model.reconstruct(x.flatten(1)).view_as(x), test_images, area)
        print(f"PCA with {code_size} components: test MSE per pixel {pca_mse:.5f} ({time.time() - started:.1f} s)")
    elif main_process:
        print(f"the code has {code_size:,} numbers for {pixels:,} pixels: it is overcomplete, so it need not compress, "
              f"and PCA with as many components is exact; no PCA comparison")

    start_epoch, log_rows = (1, []) if checkpoint is None else \
        restore_run(checkpoint, args.resume, model, {"optimizer": optimizer}, batches)

    for epoch in range(start_epoch, args.epochs + 1):
        # ---- train one epoch ----
        model.train()
        sums = {"total": 0.0, "recon": 0.0, "code_l2": 0.0}
        started = last_report = time.time()
        for step, (x, _) in enumerate(batches, 1):
            with autocast(args.amp):
                losses = loss_of(x.contiguous(memory_format=memory_format))
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
        if not main_process:  # rank 0 alone evaluates, draws and writes; the rest wait for it
            share_random_state(world_size, device)
            continue

        # ---- evaluate: test MSE per pixel, and the Gaussian over training codes that sample.py draws from ----
        model.eval()
        test_mse = mse_per_pixel(model.reconstruct, test_images, area)
        if not math.isfinite(test_mse):  # never checkpoint a model that scores NaN
            raise stopped_by({"test MSE per pixel": test_mse}, epoch, out)
        model.fit_code_gaussian(encode_all(model, train_images[:10_000].to(device), args.batch_size))
        print(f"epoch {epoch}/{args.epochs} | train loss {train_parts['total']:.2f} | test MSE per pixel "
              f"{test_mse:.5f}{'' if pca_mse is None else f' (PCA {pca_mse:.5f})'} | {seconds:.1f} s, {len(batches) * args.batch_size / seconds:,.0f} img/s")

        # ---- pictures: reconstructions of fixed test images ----
        with torch.no_grad():
            grid = torch.cat([fixed_test, model.reconstruct(fixed_test)])
        save_image(grid, out / "reconstructions.png", nrow=8)
        save_image(grid, out / "frames" / f"reconstructions_{epoch:03d}.png", nrow=8)

        # ---- log row and checkpoint ----
        log_rows.append({"epoch": epoch, **{f"train_{k}": f"{v:.4f}" for k, v in train_parts.items()},
                         "test_mse_per_pixel": f"{test_mse:.6f}", "pca_mse_per_pixel": "" if pca_mse is None else f"{pca_mse:.6f}",
                         "seconds": f"{seconds:.2f}", "images_per_second": f"{len(batches) * args.batch_size / seconds:.0f}"})
        save_epoch(out, checkpoint_state("AE", model, model_config, {"optimizer": optimizer}, epoch, args, batches),
                   log_rows)
        share_random_state(world_size, device)

    # ---- end of run: figures (rank 0) ----
    if not main_process:
        return model
    save_training_gif(out, "reconstructions")
    curves = {"test MSE per pixel": [float(r["test_mse_per_pixel"]) for r in log_rows]}
    if pca_mse is not None:
        curves["PCA"] = [float(r["pca_mse_per_pixel"]) for r in log_rows]
    save_curves(out / "loss_curves.png", curves, title=f"test reconstruction error, {code_size} codes",
                y_label="MSE per pixel")
    model.eval()
    save_image(model.sample(64), out / "samples.png", nrow=8)
    draw_code_figures(model, test_images, test_labels, out, args.embedding)
    print(f"done: figures, log.csv and checkpoint.pt in {out}")
    return model


@torch.no_grad()
def mse_per_pixel(reconstruct, images, area, batch_size=1000):
    """Mean squared error per pixel, in [0, 1] units, over `area` of every test image."""
    total = 0.0
    for x, _ in Batches(images, None, batch_size, shuffle=False, drop_last=False):
        total += (reconstruct(x) - x)[..., area, area].square().sum().item()
    return total / (len(images) * images[0, ..., area, area].numel())


@torch.no_grad()
def encode_all(model, images, batch_size):
    """The codes of uint8 images, batch by batch."""
    return torch.cat([model.encode(x) for x, _ in Batches(images, None, batch_size, shuffle=False, drop_last=False)])


@torch.no_grad()
def draw_code_figures(model, test_images, test_labels, out, embedding, points=2000):
    x = next(iter(Batches(test_images, None, points, shuffle=False, drop_last=False)))[0]
    codes = model.encode(x)
    labels = test_labels[:len(x)] if test_labels is not None else torch.zeros(len(x), dtype=torch.int64)

    # Interpolation: 8 pairs of test images (labelled: class r to class r + 5), 10 steps between their codes.
    pairs = interpolation_pairs(labels)
    steps = torch.linspace(0, 1, 10, device=codes.device).view(1, 10, *[1] * (codes.dim() - 1))
    path = codes[[a for a, _ in pairs]].unsqueeze(1) * (1 - steps) + codes[[b for _, b in pairs]].unsqueeze(1) * steps
    save_image(model.sample(codes=path.flatten(0, 1)), out / "interpolation.png", nrow=10)

    if test_labels is None:
        return
    flat = codes.flatten(1).cpu()
    if flat.shape[1] == 2:
        save_scatter(out / "codes_2d.png", flat, labels.cpu(), title="test-set codes", x_label="code 1", y_label="code 2")
        # The manifold: decode a 20x20 grid over the range the codes occupy (1st to 99th percentile).
        low, high = torch.quantile(flat, 0.01, dim=0), torch.quantile(flat, 0.99, dim=0)
        first, second = [torch.linspace(low[d].item(), high[d].item(), 20) for d in range(2)]
        grid = torch.stack(torch.meshgrid(second.flip(0), first, indexing="ij"), -1).flip(-1).reshape(-1, 2)
        save_image(model.sample(codes=grid.to(codes.device)), out / "manifold.png", nrow=20)
    else:
        flattened = tsne(flat) if embedding == "tsne" else pca(flat)
        save_scatter(out / f"codes_{embedding}.png", flattened, labels.cpu(), title=f"{embedding} of test-set codes",
                     x_label=f"{embedding} 1", y_label=f"{embedding} 2")


if __name__ == "__main__":
    main()
