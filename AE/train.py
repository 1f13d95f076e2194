"""Train an autoencoder and compare its reconstruction error with PCA's on the same images.

    python AE/train.py --epochs 50                               # linear bottleneck, 16 codes
    python AE/train.py --latent-dim 2 --epochs 50                # 2-D codes: scatter and manifold
    python AE/train.py --arch conv                               # fully convolutional (128 x 4 x 4)
    python AE/train.py --code-activation sigmoid --latent-dim 2  # codes squashed into (0, 1)
    python AE/train.py --code-l2 0.01                            # unbounded codes pulled toward 0

The figure that matters is the test MSE per pixel (over the original 28x28 area for MNIST, without
the padding), beside PCA with as many components as the code has, fitted on the same training
images. A code with at least as many numbers as the image has pixels (the conv AE's 2,048 for 32x32
MNIST) is overcomplete: PCA with that many components is the identity, so it gets no PCA figure.

Everything goes to --out (default AE/results/<dataset>-linear-n<latent> or <dataset>-conv, then
-cosine for --lr-schedule cosine):
    log.csv              one row per epoch: train loss parts, test MSE per pixel, PCA's MSE per
                         pixel (empty for an overcomplete code), time
    checkpoint.pt        model (with the Gaussian fitted to its training codes), optimizer, epoch,
                         flags and random states, written every epoch
    reconstructions.png  fixed test images (top rows) and their reconstructions (bottom rows)
    frames/reconstructions_NNN.png, training.gif   the reconstruction grid, epoch by epoch
    loss_curves.png      test MSE per pixel (against PCA's)
    samples.png          decoded codes drawn from a Gaussian fitted to the training codes
    interpolation.png    decoded straight lines between the codes of two test images
    codes_2d.png and manifold.png (2-D code), or codes_tsne.png / codes_pca.png (labelled data)
"""
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any directory

import torch

from common.blocks import num_halvings
from common.data import DEFAULT_IMAGE_SIZE, Batches, load_dataset, original_area
from common.distributed import (data_parallel, describe_batch, join_process_group,
                                main_process_first, mean_over_processes, share_random_state)
from common.pictures import save_curves, save_grid, save_training_gif
from common.run import (NON_NEGATIVE, FlagParser, add_shared_flags, autocast, check_finite,
                        checkpoint_state, choose_device, create_run_folder, finish_run, lr_factor,
                        print_progress, restore_run, run_training, save_epoch, seed_everything,
                        speed_flags_for, start_run)
from AE.report import draw_code_figures, encode_all, mse_per_pixel
from AE.model import AUTOENCODERS, PCA, make_autoencoder

HERE = Path(__file__).resolve().parent


def main():
    run_training(train, make_parser())


def make_parser():
    parser = FlagParser(description="Train an autoencoder.")
    add_shared_flags(parser, HERE, epochs=50, batch_size=128, lr=1e-3, latent_dim=16)
    flag = parser.add_argument
    flag("--arch", default="linear", choices=list(AUTOENCODERS),
         help="linear: a --latent-dim bottleneck; conv: no linear layers")
    flag("--code-activation", default="none", choices=["none", "sigmoid"],
         help="sigmoid: every code in (0, 1)")
    flag("--code-l2", type=float, default=0.0, metavar="W", help="adds W * ||z||^2 to the loss")
    flag("--loss", default="bce", choices=["bce", "mse"], help="reconstruction loss")
    flag("--embedding", default="tsne", choices=["tsne", "pca"], help="2-D view of larger codes")
    return parser


def train(args):
    """Train as the flags say; returns the trained model (in every process, under torchrun)."""
    code = f"linear-n{args.latent_dim}" if args.arch == "linear" else "conv"  # conv: its own size
    run_name = f"{args.dataset}-{code}"
    run_name += "-cosine" if args.lr_schedule == "cosine" else ""
    args, checkpoint, out = start_run(args, "AE", HERE / "results" / run_name,
                                      ranges={"code_l2": NON_NEGATIVE}, free=("embedding",))
    device, rank, world_size = join_process_group(choose_device(args.device))
    main_process = rank == 0  # the one that prints, draws and writes
    memory_format = speed_flags_for(args, device)
    seed_everything(args.seed)  # the same seed in every process: the same weights

    # a size the conv trunk cannot halve is refused before any image is decoded
    num_halvings(args.image_size or DEFAULT_IMAGE_SIZE.get(args.dataset, 32))
    with main_process_first(world_size):  # one download, one cache
        train_images, train_labels = load_dataset(args.dataset, args.data_root, args.image_size)
        test_images, test_labels = load_dataset(args.dataset, args.data_root, args.image_size,
                                                train=False)
    area = original_area(args.dataset, train_images.shape[-1])  # MNIST: 28x28 inside the padding
    model_config = dict(arch=args.arch, image_shape=list(train_images.shape[1:]),
                        code_dim=args.latent_dim, code_activation=args.code_activation,
                        code_l2=args.code_l2, recon_loss=args.loss)
    model = make_autoencoder(**model_config).to(device, memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), args.lr, fused=device.type in ("cpu", "cuda"))
    if args.compile:
        model.compile()
    loss_of = data_parallel(model, model.loss, world_size)  # averages gradients under torchrun
    batches = Batches(train_images.to(device), None, args.batch_size, seed=args.seed, rank=rank,
                      world_size=world_size)
    test_images = test_images.to(device)
    fixed_test = next(iter(Batches(test_images, None, 16, shuffle=False, drop_last=False)))[0]
    code_size, pixels = math.prod(model.code_shape), math.prod(train_images.shape[1:])
    if main_process:
        create_run_folder(out)
        print(f"{type(model).__name__} ({sum(p.numel() for p in model.parameters()):,} parameters,"
              f" code of {code_size}) on {args.dataset} {tuple(train_images.shape[1:])}, "
              f"{describe_batch(args.batch_size, world_size)}, device {device}, writing to {out}")
        if args.code_activation == "sigmoid" and args.code_l2 > 0:
            print("warning: --code-l2 pulls sigmoid codes toward 0, where the sigmoid saturates "
                  "and passes almost no gradient; use it with --code-activation none")

    # The baseline: PCA with as many components as the code has numbers, on the same flattened
    # images; above 4,096 pixels (64x64 RGB) on the first 20,000, to bound the memory PCA.fit needs.
    pca_mse = None
    if code_size < pixels and main_process:
        started = time.time()
        fitted_images = train_images[:20_000 if pixels > 4096 else None].flatten(1) / 255
        pca_model = PCA(code_size).fit(fitted_images)
        pca_mse = mse_per_pixel(lambda x: pca_model.reconstruct(x.flatten(1)).view_as(x),
                                test_images, area)
        print(f"PCA with {code_size} components: test MSE per pixel {pca_mse:.5f} "
              f"({time.time() - started:.1f} s)")
    elif main_process:
        print(f"the code has {code_size:,} numbers for {pixels:,} pixels: it is overcomplete, so "
              f"it need not compress, and PCA with as many components is exact; no PCA comparison")
    start_epoch, log_rows = restore_run(checkpoint, args.resume, model, {"optimizer": optimizer},
                                        batches)

    for epoch in range(start_epoch, args.epochs + 1):
        # ---- train one epoch ----
        model.train()
        sums = {"total": 0.0, "recon": 0.0, "code_l2": 0.0}
        started = last_report = time.time()
        for step, (x, _) in enumerate(batches, 1):
            with autocast(args.amp):
                # loss = recon(x, g(f(x))) + code_l2 * ||f(x)||^2,  per image
                losses = loss_of(x.contiguous(memory_format=memory_format))
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

        # ---- evaluate: test MSE per pixel, and the Gaussian over training codes that samples ----
        model.eval()
        test_mse = mse_per_pixel(model.reconstruct, test_images, area)
        check_finite({"test MSE per pixel": test_mse}, epoch, out)
        training_codes = encode_all(model, train_images[:10_000].to(device), args.batch_size)
        model.fit_code_gaussian(training_codes)
        speed = len(batches) * args.batch_size / seconds  # images per second
        print(f"epoch {epoch}/{args.epochs} | train loss {train_parts['total']:.2f} | test MSE per "
              f"pixel {test_mse:.5f}{'' if pca_mse is None else f' (PCA {pca_mse:.5f})'} | "
              f"{seconds:.1f} s, {speed:,.0f} img/s")

        # ---- pictures: reconstructions of fixed test images ----
        with torch.no_grad():
            grid = torch.cat([fixed_test, model.reconstruct(fixed_test)])
        save_grid(grid, out / "reconstructions.png", nrow=8)
        save_grid(grid, out / "frames" / f"reconstructions_{epoch:03d}.png", nrow=8)

        # ---- log row and checkpoint ----
        train_columns = {f"train_{name}": f"{value:.4f}" for name, value in train_parts.items()}
        log_rows.append({"epoch": epoch, **train_columns, "test_mse_per_pixel": f"{test_mse:.6f}",
                         "pca_mse_per_pixel": "" if pca_mse is None else f"{pca_mse:.6f}",
                         "seconds": f"{seconds:.2f}", "images_per_second": f"{speed:.0f}"})
        save_epoch(out, checkpoint_state("AE", model, model_config, {"optimizer": optimizer},
                                         epoch, args, batches), log_rows)
        share_random_state(world_size, device)

    # ---- end of run (rank 0): every file rewritten whole, so a cut-short end can run again ----
    if not main_process:
        return model
    save_training_gif(out, "reconstructions")
    curves = {"test MSE per pixel": [float(row["test_mse_per_pixel"]) for row in log_rows]}
    if pca_mse is not None:
        curves["PCA"] = [float(row["pca_mse_per_pixel"]) for row in log_rows]
    save_curves(out / "loss_curves.png", curves, y_label="MSE per pixel",
                title=f"test reconstruction error, {code_size} codes")
    model.eval()
    save_grid(model.sample(64), out / "samples.png", nrow=8)
    draw_code_figures(model, test_images, test_labels, out, args.embedding)
    finish_run(out)
    print(f"done: figures, log.csv and checkpoint.pt in {out}")
    return model


if __name__ == "__main__":
    main()
