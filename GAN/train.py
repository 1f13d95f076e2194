"""Train a GAN (DCGAN, CGAN, ACGAN or InfoGAN) with the GAN, WGAN or WGAN-GP loss; measure its FID.

    python GAN/train.py --epochs 20                  # DCGAN (non-saturating loss) on MNIST
    python GAN/train.py --loss wgan-gp               # a critic with a gradient penalty
    python GAN/train.py --model cgan                 # conditional: G(z, y) and D(x, y)
    python GAN/train.py --model acgan                # D also classifies; both get the class loss
    python GAN/train.py --model infogan              # no labels: codes it learns to make readable
    python GAN/train.py --resume GAN/results/mnist-dcgan/checkpoint.pt --epochs 40

An epoch is one pass of D over the training set; G steps once every --n-critic D steps. Flags left
at None take the model's and the loss's own settings (GAN/model.py). Everything goes to --out
(default GAN/results/<dataset>-<model>[-<loss>]): log.csv (per epoch: the mean losses and their
parts; every --fid-every epochs the FID of 2,000 samples and the model's own figure), fid.csv (at
the end: FID of --fid-samples samples against the test set, its floor, each class's share of the
samples, the model's own figures), checkpoint.pt, pictures from fixed inputs (frames/, samples.png,
training.gif, infogan's code sweeps), loss_curves.png and fid_curve.png. The FID uses the features
of a small classifier trained on the dataset's labels (GAN/evaluate.py): datasets without labels
get none. Samples, pictures and FID come from the moving average of G's weights (--ema).
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any folder

import torch

from common import InputError
from common.blocks import num_halvings
from common.data import DEFAULT_IMAGE_SIZE, Batches, load_dataset, split_training_set
from common.distributed import (data_parallel, describe_batch, join_process_group,
                                main_process_first, mean_over_processes, share_random_state)
from common.pictures import save_curves, save_grid, save_training_gif
from common.run import (NON_NEGATIVE, POSITIVE, FlagParser, add_shared_flags, autocast,
                        check_finite, checkpoint_state, choose_device, create_run_folder,
                        finish_run, lr_factor, print_progress, restore_run, run_training,
                        save_epoch, seed_everything, speed_flags_for, start_run)
from GAN.evaluate import SampleScorer, final_report, save_fid_curve, watch, watched_columns
from GAN.model import LOSSES, MODELS, make_gan

HERE = Path(__file__).resolve().parent


def main():
    run_training(train, make_parser())


def make_parser():
    parser = FlagParser(description="Train a GAN. Flags left at None take the model's and the "
                                    "loss's own settings (GAN/model.py). The first run on a "
                                    "dataset trains the FID's classifier once (about 5 minutes "
                                    "on a CPU).")
    add_shared_flags(parser, HERE, epochs=20, batch_size=64, lr=None, latent_dim=None)
    flag = parser.add_argument
    flag("--model", default="dcgan", choices=MODELS, help="the variant (GAN/model.py)")
    flag("--loss", default="gan", choices=LOSSES, help="the objective (GAN/model.py)")
    flag("--g-lr", type=float, default=None, help="G's learning rate (--lr is D's)")
    flag("--n-critic", type=int, default=None, help="D steps per G step")
    flag("--width", type=int, default=None, help="channels of the largest feature maps")
    flag("--ema", type=float, default=0.999,
         help="decay of the moving average of G's weights that samples; 0: G itself")
    flag("--fid-every", type=int, default=5, help="FID of 2,000 samples every N epochs")
    flag("--fid-samples", type=int, default=10_000, help="samples for the final FID (0: none)")
    return parser


def train(args):
    """Train as the flags say; returns the trained model (in every process, under torchrun)."""
    run_name = f"{args.dataset}-{args.model}" + ("" if args.loss == "gan" else f"-{args.loss}")
    args, checkpoint, out = start_run(args, "GAN", HERE / "results" / run_name, ranges=dict(
        g_lr=POSITIVE, n_critic=POSITIVE, width=POSITIVE, ema=NON_NEGATIVE,
        fid_every=NON_NEGATIVE, fid_samples=NON_NEGATIVE), free=("fid_every", "fid_samples"))
    if args.ema >= 1 or args.fid_samples == 1:  # a decay is below 1; a covariance needs two
        raise InputError(f"--ema must be below 1 (not {args.ema}) and --fid-samples 0 or >= 2 "
                         f"(not {args.fid_samples})")
    device, rank, world_size = join_process_group(choose_device(args.device))
    main_process = rank == 0  # the one that prints, draws, measures and writes
    memory_format = speed_flags_for(args, device)
    seed_everything(args.seed)  # the same seed in every process: the same weights, one stream

    num_halvings(args.image_size or DEFAULT_IMAGE_SIZE.get(args.dataset, 32))  # before decoding
    with main_process_first(world_size):  # one download, one cache
        train_images, train_labels = load_dataset(args.dataset, args.data_root, args.image_size)
    num_classes = 10 if train_labels is None else int(train_labels.max()) + 1
    model = make_gan(args.model, image_shape=tuple(train_images.shape[1:]),
                     num_classes=num_classes, latent_dim=args.latent_dim, width=args.width,
                     loss=args.loss, ema_decay=args.ema).to(device, memory_format=memory_format)
    labels = model.conditioning_labels(train_labels)  # None: G and D never see the labels
    if args.batch_size // world_size < model.smallest_batch:
        raise InputError(f"--batch-size {args.batch_size} gives each process "
                         f"{args.batch_size // world_size} image(s), and a {args.model} needs "
                         f"{model.smallest_batch} or more: BatchNorm1d normalises over the batch")
    d_optimizer, g_optimizer = model.optimizers(args.lr, args.g_lr,
                                                fused=device.type in ("cpu", "cuda"))
    optimizers = {"d_optimizer": d_optimizer, "g_optimizer": g_optimizer}
    n_critic = args.n_critic or model.n_critic
    if args.compile:
        model.generator.compile()
        if args.loss != "wgan-gp":  # torch.compile cannot differentiate twice, as the penalty does
            model.discriminator.compile()
    # The two losses, each averaging its own network's gradients over the processes under torchrun
    discriminator_loss = data_parallel(model.discriminator, model.discriminator_loss, world_size)
    generator_loss = data_parallel(model.generator, model.generator_loss, world_size)
    batches = Batches(train_images.to(device), None if labels is None else labels.to(device),
                      args.batch_size, seed=args.seed, value_range=(-1.0, 1.0), rank=rank,
                      world_size=world_size)
    picture_codes = model.picture_codes(args.seed)
    scorer = validation_set = test_set = None
    if train_labels is not None and (args.fid_every or args.fid_samples) and main_process:
        test_set = load_dataset(args.dataset, args.data_root, args.image_size, train=False)
        scorer = SampleScorer(args.dataset, args.data_root, (train_images, train_labels),
                              test_set, device)
        validation_set = split_training_set(train_images, train_labels)[1]
        floors = [scorer.floor(count) for count in (2000, args.fid_samples) if count]
        print("FID floor (held-out real training images against the test set): "
              + ", ".join(f"{floor:.3f} for {used:,} images" for floor, used in floors))
    if main_process:
        sizes = [sum(p.numel() for p in net.parameters())
                 for net in (model.generator, model.discriminator)]
        print(f"GAN ({args.model}, {args.loss} loss, G {sizes[0]:,} + D {sizes[1]:,} parameters) "
              f"on {args.dataset} {tuple(train_images.shape[1:])}: {len(train_images)} images, "
              f"{describe_batch(args.batch_size, world_size)}, {type(d_optimizer).__name__} lr "
              f"{d_optimizer.defaults['lr']:g} (D), {g_optimizer.defaults['lr']:g} (G), "
              f"{n_critic} D step(s) per G step, device {device}, writing to {out}"
              + ("; no FID: the dataset has no labels" if train_labels is None else ""))
        create_run_folder(out)
    start_epoch, log_rows = restore_run(checkpoint, args.resume, model, optimizers, batches)
    troubled_epochs = []  # epochs that diverged or collapsed (warned about, not stopped)

    for epoch in range(start_epoch, args.epochs + 1):
        model.train()
        sums, g_loss_sum, g_steps = {}, 0.0, 0  # running sums of the losses' parts, on the device
        started = last_report = time.time()
        for step, (real, real_labels) in enumerate(batches, 1):
            # counted over the run, so a resumed run keeps the rhythm
            generator_steps_now = ((epoch - 1) * len(batches) + step) % n_critic == 0
            schedule = lr_factor(args, epoch, step, len(batches))  # one curve for D's and G's lr
            for optimizer in (d_optimizer, g_optimizer):
                optimizer.param_groups[0]["lr"] = optimizer.defaults["lr"] * schedule
            real = real.contiguous(memory_format=memory_format)
            # Each process draws the whole batch's noise and codes and keeps its rows, as one would
            z = batches.shard(model.noise(args.batch_size))
            codes = model.random_codes(args.batch_size, real_labels, rows=batches.part)
            # G's graph is kept for its own step only
            with torch.set_grad_enabled(generator_steps_now), autocast(args.amp):
                fake = model.generate(z, codes)

            # ---- D phase: raise D(x), lower D(G(z)) (and learn the class / the codes back) ----
            # L_D = -log sigma(D(x)) - log(1 - sigma(D(G(z))))   (critics: f(G(z)) - f(x) [+ GP])
            with autocast(args.amp):
                d_parts = discriminator_loss(real, fake.detach(), real_labels, codes)
            d_optimizer.zero_grad(set_to_none=True)
            d_parts["total"].backward()
            d_optimizer.step()
            if args.loss == "wgan":  # keep the critic K-Lipschitz: w <- clip(w, -c, c)
                model.clip_critic_weights()

            # ---- G phase, every n_critic D steps: raise D(G(z)) under the D just updated ----
            # L_G = -log sigma(D(G(z)))                          (critics: -f(G(z)))
            if generator_steps_now:
                with autocast(args.amp):
                    g_loss = generator_loss(fake, codes)["total"]
                g_optimizer.zero_grad(set_to_none=True)
                g_loss.backward()
                g_optimizer.step()
                model.update_averaged_generator()
                g_loss_sum += g_loss.detach()
                g_steps += 1

            for name, value in d_parts.items():  # stays on the device: no GPU sync per step
                name = "d_loss" if name == "total" else name
                sums[name] = sums.get(name, 0.0) + value.detach()
            if time.time() - last_report > 10 or step == len(batches):  # .item() waits for the GPU
                last_report = time.time()
                means = {"d_loss": sums["d_loss"].item() / step,
                         "g_loss": float(g_loss_sum) / max(g_steps, 1)}
                check_finite(means, epoch, out, step)
                if main_process:
                    print_progress(epoch, args.epochs, step, len(batches), args.batch_size, started,
                                   {**means, "D(x)": sums["d_real"].item() / step,
                                    "D(G(z))": sums["d_fake"].item() / step})
        seconds = time.time() - started
        totals = mean_over_processes({**sums, "g_loss": g_loss_sum}, world_size)
        if not main_process:  # rank 0 alone measures, draws and writes; the rest take its state
            share_random_state(world_size, device)
            continue
        means = {name: float(value) / len(batches) for name, value in totals.items()
                 if name != "g_loss"}
        row = {"epoch": epoch, "d_loss": means.pop("d_loss"),
               "g_loss": float(totals["g_loss"]) / max(g_steps, 1), **means}
        if trouble := diagnose(row, args.loss):
            troubled_epochs.append(epoch)
            print(f"warning: epoch {epoch}: {trouble}")

        # ---- evaluate: FID of 2,000 samples, from the same inputs (seeded) every epoch ----
        model.eval()
        row |= dict.fromkeys(watched_columns(model), "")
        if scorer and args.fid_every and (epoch % args.fid_every == 0 or epoch == args.epochs):
            row |= watch(model, scorer, args.batch_size * 16, args.seed, validation_set)
        rate = len(batches) * args.batch_size / seconds
        shown = " | ".join(f"{name} {value:.4g}" for name, value in row.items()
                           if name != "epoch" and value != "")
        print(f"epoch {epoch}/{args.epochs} | {shown} | {seconds:.1f} s, {rate:,.0f} img/s")

        # ---- pictures, log row and checkpoint ----
        save_grid(model.sample(**picture_codes), out / "frames" / f"samples_{epoch:03d}.png",
                  nrow=model.picture_columns)
        log_rows.append({name: f"{value:.5g}" if isinstance(value, float) else value
                         for name, value in row.items()}
                        | {"seconds": f"{seconds:.2f}", "images_per_second": f"{rate:.0f}"})
        save_epoch(out, checkpoint_state("GAN", model, model.config, optimizers, epoch, args,
                                         batches), log_rows)
        share_random_state(world_size, device)

    # ---- end of run (rank 0): the final FID, pictures and curves; rerunnable as a whole ----
    if not main_process:
        return model
    model.eval()  # also where a resumed run only finishes its end
    if scorer and args.fid_samples:
        final_report(model, scorer, args.fid_samples, args.batch_size * 16, args.seed, test_set,
                     args.epochs, out)
    for name, images in model.extra_pictures(args.seed).items():
        save_grid(images, out / name, nrow=model.picture_columns)
    save_training_gif(out, "samples", last_frame=out / "samples.png")
    save_curves(out / "loss_curves.png", {"D loss": [float(r["d_loss"]) for r in log_rows],
                                          "G loss": [float(r["g_loss"]) for r in log_rows]},
                title="mean losses per epoch",
                y_label="nats" if args.loss == "gan" else "critic units")
    save_fid_curve(out / "fid_curve.png", log_rows)
    finish_run(out)
    print(f"done: figures, log.csv and checkpoint.pt in {out}")
    if troubled_epochs:
        print(f"warning: training diverged or collapsed in epoch(s) {troubled_epochs} (see "
              f"above): the samples are likely not digits. Try a lower --lr, or another --loss")
    return model


def diagnose(row, loss):
    """What went wrong in an epoch, or None: losses that run away (|loss| > 1e6), or, for the GAN
    loss, a D that rejects every sample (mean D(G(z)) < 0.001), which leaves G no gradient."""
    if max(abs(row["d_loss"]), abs(row["g_loss"])) > 1e6:
        return f"the losses are diverging (D {row['d_loss']:.3g}, G {row['g_loss']:.3g})"
    if loss == "gan" and row["d_fake"] < 1e-3:
        return (f"D(G(z)) stayed near 0 ({row['d_fake']:.2g}) for the whole epoch: D rejects "
                f"every sample and G has collapsed")
    return None


if __name__ == "__main__":
    main()
