"""Train a DCGAN-architecture GAN with the GAN, WGAN or WGAN-GP loss, plain or conditional, and measure it by FID.

    python GAN/train.py --epochs 20                          # DCGAN (non-saturating loss) on MNIST
    python GAN/train.py --loss wgan-gp                       # critic with gradient penalty, 5 critic steps per G step
    python GAN/train.py --loss wgan --downsample maxpool     # weight clipping; conv + max-pool in the critic
    python GAN/train.py --model cgan                         # conditional: G(z, y) and D(x, y)
    python GAN/train.py --model acgan                        # D also classifies; both get the class loss
    python GAN/train.py --model infogan                      # no labels: a categorical and two continuous codes
    python GAN/train.py --dataset cifar10 --width 64
    python GAN/train.py --resume GAN/results/mnist-gan/checkpoint.pt --epochs 40

An epoch is one pass of the discriminator over the training set; the generator steps once every
--n-critic discriminator steps. Everything goes to --out (default GAN/results/<dataset>-<loss>[-cosine]/
for dcgan, GAN/results/<dataset>-<model>[-<loss>][-cosine]/ for the others):
    log.csv               one row per epoch: D and G losses, D(x), D(G(z)), the Wasserstein estimate
                          (critics only), the gradient penalty (wgan-gp), FID of 2,000 samples every
                          --fid-every epochs (with the class accuracy of cgan/acgan samples, or InfoGAN's
                          clustering accuracy on the validation split: held-out training images), time
    fid.csv               at the end: FID of --fid-samples samples against the test set, the floor (as many
                          held-out real images against the test set), and the share of each class among the samples (mode collapse shows here); for
                          cgan/acgan the classifier's accuracy on the requested classes, overall and per
                          class; for infogan the test-set accuracy of the best one-to-one map c1 -> digit
    checkpoint.pt         both networks, both optimizers, epoch, args and random states, rewritten each epoch
    frames/samples_NNN.png, samples.png, training.gif    generated from a fixed z, every epoch; for the
                          conditional models one row per class (infogan: per value of c1), one fixed z per column
    infogan_c2.png, infogan_c3.png   infogan: rows c1 = 0..9, columns c2 (or c3) from -2 to 2, the rest fixed
    loss_curves.png       D and G losses per epoch; fid_curve.png: the 2,000-sample FID over training
FID is computed in the feature space of a small classifier trained on the dataset's labels (GAN/evaluate.py);
datasets without labels get no FID.
"""
import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any working directory

import torch
from torchvision.utils import save_image

from common import InputError
from common.data import Batches, load_dataset, split_training_set
from common.figures import save_curves, save_training_gif
from common.utils import (NON_NEGATIVE, POSITIVE, add_shared_flags, autocast, checkpoint_state, choose_device,
                          create_run_folder, data_parallel, describe_batch, join_process_group, lr_factor,
                          main_process_first, mean_over_processes, print_progress, restore_run, run_training,
                          save_epoch, seed_everything, share_random_state, speed_flags_for, start_run, stopped_by)
from GAN.evaluate import SampleScorer, draw_code_sweeps, final_report, watch, watched_columns
from GAN.model import LOSSES, MODELS, NOISE_PRIORS, CGAN, InfoGAN, make_gan

HERE = Path(__file__).resolve().parent

# Each loss trains with its paper's optimizer: DCGAN (Radford et al.), WGAN (Arjovsky et al., Algorithm 1)
# and WGAN-GP (Gulrajani et al., Algorithm 1). --lr and --n-critic override them.
PAPER_SETTINGS = {
    "gan": dict(optimizer="Adam", lr=2e-4, betas=(0.5, 0.999), n_critic=1),
    "wgan": dict(optimizer="RMSprop", lr=5e-5, n_critic=5),
    "wgan-gp": dict(optimizer="Adam", lr=1e-4, betas=(0.0, 0.9), n_critic=5),
}


def main():
    run_training(train, make_parser().parse_args())


def make_parser():
    settings = "; ".join(f"{loss}: {s['optimizer']} lr {s['lr']:g}" + (f" betas {s['betas']}" if "betas" in s else "")
                         + f", {s['n_critic']} D step(s) per G step" for loss, s in PAPER_SETTINGS.items())
    parser = argparse.ArgumentParser(description="Train a GAN.", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     epilog=f"Defaults per --loss (the papers'): {settings}. --latent-dim: 100; for "
                                            f"infogan 62, with --g-hidden and --d-hidden 1024 (its paper's MNIST setting) "
                                            f"and --noise uniform (its code's).")
    add_shared_flags(parser, HERE, epochs=20, batch_size=64, lr=None, latent_dim=None)
    parser.add_argument("--model", default="dcgan", choices=MODELS,
                        help="dcgan: unconditional; cgan, acgan: conditioned on the class label; infogan: on learned codes")
    parser.add_argument("--loss", default="gan", choices=LOSSES,
                        help="gan: non-saturating GAN loss; wgan: weight clipping; wgan-gp: gradient penalty")
    parser.add_argument("--g-lr", type=float, default=None,
                        help="the generator's learning rate; None: with the gan loss, twice D's for dcgan (measured: "
                             "docs/results.md) and 1e-3 against D's 2e-4 for infogan (its paper's setting); otherwise D's")
    parser.add_argument("--code-weight", type=float, default=1.0,
                        help="weight of ACGAN's class loss and of InfoGAN's information loss (lambda)")
    parser.add_argument("--continuous-weight", type=float, default=1.0,
                        help="infogan: weight of the continuous codes' information term, relative to c1's (gamma)")
    parser.add_argument("--category-scale", type=float, default=1.0,
                        help="infogan: c1 enters G as a one-hot times this (1: the paper)")
    parser.add_argument("--q-trains-body", action=argparse.BooleanOptionalAction, default=True,
                        help="infogan: the information loss also trains D's body in D's step (the paper); with "
                             "--no-q-trains-body Q reads the body's features there without changing them")
    parser.add_argument("--width", type=int, default=32,
                        help="channels of the largest feature maps (DCGAN used 64 at 64x64 pixels; 32 suits 32x32 digits "
                             "and trains 2.4x faster on a CPU)")
    parser.add_argument("--g-hidden", type=int, default=None,
                        help="units of a fully connected layer at the start of G, before its convolutions (0: none); "
                             "None: 1024 for infogan (its paper's MNIST generator), 0 otherwise")
    parser.add_argument("--d-hidden", type=int, default=None,
                        help="units of a fully connected layer at the end of D's body, which Q shares (0: none); "
                             "None: 1024 for infogan (its paper's MNIST discriminator), 0 otherwise")
    parser.add_argument("--noise", default=None, choices=NOISE_PRIORS,
                        help="the prior of z: normal, N(0, I); uniform, U(-1, 1) in each dimension; None: uniform for "
                             "infogan (its own code's), normal otherwise")
    parser.add_argument("--downsample", default="stride", choices=["stride", "maxpool"],
                        help="how the discriminator halves the resolution: strided 4x4 conv, or 3x3 conv + 2x2 max-pool")
    parser.add_argument("--n-critic", type=int, default=None, help="D steps per G step; None: the loss's default (below)")
    parser.add_argument("--clip", type=float, default=0.01, help="wgan: critic weights are clipped to [-clip, clip]")
    parser.add_argument("--gp-weight", type=float, default=10.0, help="wgan-gp: lambda, the gradient penalty's weight")
    parser.add_argument("--ema", type=float, default=0.999,
                        help="decay of the moving average of G's weights that samples, FID and pictures come from "
                             "(Yazici et al.); 0: sample the live G. The first G steps use (1 + t) / (10 + t) when that "
                             "is smaller, so a decay d takes over after (10 d - 1) / (1 - d) steps: 8,991 for 0.999")
    parser.add_argument("--fid-every", type=int, default=5,
                        help="log the FID of 2,000 samples, the same noise each time, every this many epochs (0: never)")
    parser.add_argument("--fid-samples", type=int, default=10_000, help="samples for the FID at the end of the run (0: none)")
    return parser


def train(args):
    """Train as the flags say; returns the trained model (in every process, under torchrun)."""
    run_name = f"{args.dataset}-{args.loss}" if args.model == "dcgan" else \
        f"{args.dataset}-{args.model}" + ("" if args.loss == "gan" else f"-{args.loss}")
    run_name += "-cosine" if args.lr_schedule == "cosine" else ""
    args, checkpoint, out = start_run(args, "GAN", HERE / "results" / run_name, ranges=dict(
        g_lr=POSITIVE, code_weight=NON_NEGATIVE, continuous_weight=NON_NEGATIVE, category_scale=POSITIVE, width=POSITIVE,
        g_hidden=NON_NEGATIVE, d_hidden=NON_NEGATIVE, n_critic=POSITIVE, clip=POSITIVE, gp_weight=NON_NEGATIVE,
        ema=NON_NEGATIVE, fid_every=NON_NEGATIVE, fid_samples=NON_NEGATIVE))
    if args.ema >= 1:
        raise InputError(f"--ema is a decay below 1 (0.999 averages over about 1,000 G steps), not {args.ema}")
    device, rank, world_size = join_process_group(choose_device(args.device))  # (device, 0, 1) without torchrun
    main_process = rank == 0  # the one that prints, draws, measures and writes
    memory_format = speed_flags_for(args, device)
    seed_everything(args.seed)  # the same seed in every process: the same weights, one shared random stream
    settings = PAPER_SETTINGS[args.loss]
    if args.lr is None:
        args.lr = settings["lr"]
    if args.n_critic is None:
        args.n_critic = settings["n_critic"]
    if args.g_lr is None:  # G a step ahead of D: DCGAN's FID after 20 epochs fell in every seed measured (docs/results.md)
        args.g_lr = {"dcgan": 2 * args.lr, "infogan": 1e-3}.get(args.model, args.lr) if args.loss == "gan" else args.lr
    # InfoGAN's MNIST networks (Chen et al., Table 1): 62 noise dimensions, a fully connected layer of 1024 units in
    # G and in D. Over 5 seeds they clustered 93.9% of the validation digits on average, the former defaults (DCGAN's
    # smaller networks) 81.8%; z ~ U(-1, 1), as InfoGAN's own code draws it, took the seeds that merged two digits
    # to 95% and more (docs/results.md).
    defaults = dict(latent_dim=62, g_hidden=1024, d_hidden=1024, noise="uniform") if args.model == "infogan" else \
        dict(latent_dim=100, g_hidden=0, d_hidden=0, noise="normal")
    if checkpoint is not None:  # a run saved before --g-hidden, --d-hidden and --noise existed: no layer, z ~ N(0, I)
        defaults |= dict(g_hidden=0, d_hidden=0, noise="normal")
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    with main_process_first(world_size):  # one download, one cache
        train_images, train_labels = load_dataset(args.dataset, args.data_root, args.image_size, train=True)
    uses_labels = args.model in ("cgan", "acgan")  # infogan never sees them
    if uses_labels and train_labels is None:
        raise InputError(f"--model {args.model} is conditioned on class labels, and the {args.dataset} images have none")
    num_classes = int(train_labels.max()) + 1 if train_labels is not None else 10
    model_config = dict(model=args.model, image_shape=list(train_images.shape[1:]), latent_dim=args.latent_dim,
                        noise=args.noise, width=args.width, generator_hidden=args.g_hidden,
                        discriminator_hidden=args.d_hidden, loss=args.loss, downsample=args.downsample,
                        clip=args.clip, gp_weight=args.gp_weight, ema_decay=args.ema)
    model_config |= {"dcgan": {}, "cgan": dict(num_classes=num_classes),
                     "acgan": dict(num_classes=num_classes, class_weight=args.code_weight),
                     "infogan": dict(num_classes=num_classes, information_weight=args.code_weight,
                                     continuous_weight=args.continuous_weight, category_scale=args.category_scale, q_trains_body=args.q_trains_body)}[args.model]
    model = make_gan(**model_config).to(device, memory_format=memory_format)
    fused = device.type in ("cpu", "cuda")
    if settings["optimizer"] == "Adam":
        d_optimizer = torch.optim.Adam(model.discriminator.parameters(), lr=args.lr, betas=settings["betas"], fused=fused)
        g_optimizer = torch.optim.Adam(model.generator.parameters(), lr=args.g_lr, betas=settings["betas"], fused=fused)
    else:
        d_optimizer = torch.optim.RMSprop(model.discriminator.parameters(), lr=args.lr)
        g_optimizer = torch.optim.RMSprop(model.generator.parameters(), lr=args.g_lr)
    if args.compile:
        model.generator.compile()
        if args.loss != "wgan-gp":  # torch.compile cannot differentiate twice, as the gradient penalty does
            model.discriminator.compile()
    # The two losses, each averaging its own network's gradients over the processes under torchrun
    discriminator_loss = data_parallel(model.discriminator, model.discriminator_loss, world_size)
    generator_loss = data_parallel(model.generator, model.generator_loss, world_size)
    batches = Batches(train_images.to(device), train_labels.to(device) if uses_labels else None, args.batch_size,
                      seed=args.seed, value_range=(-1.0, 1.0), rank=rank, world_size=world_size)
    fixed = fixed_codes(model, args.seed, device)
    # InfoGAN never trains on the labels; they only score how c1 clusters the digits: on the validation split
    # (the held-out training images) during training, on the test set once, at the end
    validation_set = test_set = None
    if args.model == "infogan" and train_labels is not None:
        validation_set = split_training_set(train_images, train_labels)[1]
        test_set = load_dataset(args.dataset, args.data_root, args.image_size, train=False)
    scorer = None
    if train_labels is not None and (args.fid_every or args.fid_samples) and main_process:
        scorer = SampleScorer(args.dataset, args.data_root, args.image_size, device)
        floors = [scorer.floor(count) for count in (2000, args.fid_samples) if count]
        print("FID floor (held-out real training images against the test set): "
              + ", ".join(f"{floor:.3f} for {used:,} images" for floor, used in floors))
    if main_process:
        print(f"GAN ({args.model}, {args.loss} loss, G {sum(p.numel() for p in model.generator.parameters()):,} + "
              f"D {sum(p.numel() for p in model.discriminator.parameters()):,} parameters) on {args.dataset} "
              f"{tuple(train_images.shape[1:])}: {len(train_images)} images, {describe_batch(args.batch_size, world_size)}, "
              f"{settings['optimizer']} lr {args.lr:g} (D), {args.g_lr:g} (G), {args.n_critic} D step(s) per G step, "
              f"device {device}, writing to {out}" + ("; no FID: the dataset has no labels" if train_labels is None else ""))
        create_run_folder(out)
    optimizers = {"d_optimizer": d_optimizer, "g_optimizer": g_optimizer}
    start_epoch, log_rows = (1, []) if checkpoint is None else restore_run(checkpoint, args.resume, model, optimizers, batches)
    troubled_epochs = []  # epochs that diverged or collapsed (warned about, not stopped)

    for epoch in range(start_epoch, args.epochs + 1):
        model.train()
        sums, g_loss_sum, g_steps = {}, 0.0, 0  # running sums of every part the losses return, on the device
        started = last_report = time.time()
        for step, (real, real_labels) in enumerate(batches, 1):
            generator_steps_now = ((epoch - 1) * len(batches) + step) % args.n_critic == 0  # counted over the run
            schedule = lr_factor(args, epoch, step, len(batches))  # D and G follow one curve, each from its own lr
            d_optimizer.param_groups[0]["lr"], g_optimizer.param_groups[0]["lr"] = args.lr * schedule, args.g_lr * schedule
            real = real.contiguous(memory_format=memory_format)
            # Each process draws the noise (and InfoGAN's codes) of the whole batch and keeps its own rows
            # (batches.part): no two processes share noise, and together they draw what a single process would.
            z = batches.shard(model.noise(args.batch_size))
            codes = model.random_codes(args.batch_size, real_labels, rows=batches.part)
            with torch.set_grad_enabled(generator_steps_now), autocast(args.amp):  # G's graph: for its own step only
                fake = model.generate(z, codes)

            # ---- D phase: raise D(x), lower D(G(z)) (and learn the class / the codes back) ----
            with autocast(args.amp):
                d_parts = discriminator_loss(real, fake.detach(), real_labels, codes)
            d_optimizer.zero_grad(set_to_none=True)
            d_parts["total"].backward()
            d_optimizer.step()
            if args.loss == "wgan":
                model.clip_critic_weights()

            # ---- G phase, every n_critic D steps: raise D(G(z)) under the D just updated ----
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
            if time.time() - last_report > 10 or step == len(batches):  # .item() waits for the GPU: not every step
                last_report = time.time()
                means = {"d_loss": sums["d_loss"].item() / step, "g_loss": float(g_loss_sum) / max(g_steps, 1)}
                if not all(map(math.isfinite, means.values())):
                    raise stopped_by(means, epoch, out, step)
                if main_process:
                    print_progress(epoch, args.epochs, step, len(batches), args.batch_size, started,
                                   {**means, "D(x)": sums["d_real"].item() / step, "D(G(z))": sums["d_fake"].item() / step})
        seconds = time.time() - started
        totals = mean_over_processes({**sums, "g_loss": g_loss_sum}, world_size)
        if not main_process:  # rank 0 alone measures, draws and writes; the rest wait for its random state
            share_random_state(world_size, device)
            continue
        means = {name: float(value) / len(batches) for name, value in totals.items() if name != "g_loss"}
        row = {"epoch": epoch, "d_loss": means.pop("d_loss"), "g_loss": float(totals["g_loss"]) / max(g_steps, 1), **means}
        trouble = diagnose(row, args.loss)
        if trouble:
            troubled_epochs.append(epoch)
            print(f"warning: epoch {epoch}: {trouble}")

        # ---- evaluate: FID of 2,000 samples, cheap enough to watch quality over training ----
        # The same 2,000 noise vectors every epoch (seeded by --seed): fresh ones would move a frozen G's FID by
        # up to 30% (docs/results.md), more than the epochs differ, so the curve would show the draw, not G.
        model.eval()
        row |= dict.fromkeys(watched_columns(model), "")
        if scorer and args.fid_every and (epoch % args.fid_every == 0 or epoch == args.epochs):
            row |= watch(model, scorer, args.batch_size * 16, args.seed, validation_set)
        print(f"epoch {epoch}/{args.epochs} | " + " | ".join(f"{name} {value:.4g}" for name, value in row.items()
                                                            if name != "epoch" and value != "")
              + f" | {seconds:.1f} s, {len(batches) * args.batch_size / seconds:,.0f} img/s")

        # ---- pictures, log row and checkpoint ----
        save_image(model.sample(**fixed), out / "frames" / f"samples_{epoch:03d}.png", nrow=8 if args.model == "dcgan" else 10)
        log_rows.append({name: f"{value:.5g}" if isinstance(value, float) else value for name, value in row.items()}
                        | {"seconds": f"{seconds:.2f}", "images_per_second": f"{len(batches) * args.batch_size / seconds:.0f}"})
        save_epoch(out, checkpoint_state("GAN", model, model_config, optimizers, epoch, args, batches), log_rows)
        share_random_state(world_size, device)

    # ---- end of run (rank 0): the full FID and class histogram, figures ----
    if not main_process:
        return model
    if scorer and args.fid_samples:
        final_report(model, scorer, args.fid_samples, args.batch_size * 16, args.seed, test_set, args.epochs, out)
    if isinstance(model, InfoGAN):
        draw_code_sweeps(model, args.seed, out)
    save_training_gif(out, "samples", last_frame=out / "samples.png")
    save_curves(out / "loss_curves.png", {"D loss": [float(r["d_loss"]) for r in log_rows],
                                          "G loss": [float(r["g_loss"]) for r in log_rows]},
                title="mean losses per epoch", y_label="nats" if args.loss == "gan" else "critic units")
    measured = [r for r in log_rows if r.get("fid_2k")]
    if measured:  # over the epochs it was measured in
        epochs = [int(r["epoch"]) for r in measured]
        averaged = (epochs, [float(r["fid_2k"]) for r in measured])
        curves = {"FID, 2,000 samples": averaged}
        if measured[0].get("fid_2k_live"):  # the averaged G's and the live G's, side by side
            curves = {"averaged G": averaged, "live G": (epochs, [float(r["fid_2k_live"]) for r in measured])}
        save_curves(out / "fid_curve.png", curves, title="FID of 2,000 samples against the test set", y_label="FID")
    print(f"done: figures, log.csv and checkpoint.pt in {out}")
    if troubled_epochs:
        print(f"warning: training diverged or collapsed in epoch(s) {', '.join(map(str, troubled_epochs))} (see above): "
              f"the samples are likely not digits. Try a lower --lr, or another --loss")
    return model


def diagnose(row, loss):
    """What went wrong in an epoch, from its mean losses, or None: losses that run away (|loss| > 1e6), or,
    for the GAN loss, a D that rejects every sample (mean D(G(z)) < 0.001), which leaves G no gradient."""
    if max(abs(row["d_loss"]), abs(row["g_loss"])) > 1e6:
        return f"the losses are diverging (D {row['d_loss']:.3g}, G {row['g_loss']:.3g})"
    if loss == "gan" and row["d_fake"] < 1e-3:
        return f"D(G(z)) stayed near 0 ({row['d_fake']:.2g}) for the whole epoch: D rejects every sample and G has collapsed"
    return None


def fixed_codes(model, seed, device):
    """The inputs of the picture drawn every epoch: 64 fixed z for dcgan; for the conditional models a
    10 x 10 grid whose row r has class (or c1) r and whose column k has the k-th fixed z, c2 = c3 = 0."""
    draw = torch.Generator().manual_seed(seed)
    if not isinstance(model, (CGAN, InfoGAN)):
        return {"z": model.noise(64, draw)}
    rows = model.num_classes
    codes = {"z": model.noise(10, draw).repeat(rows, 1),
             "labels": torch.arange(rows).repeat_interleave(10).to(device)}
    if isinstance(model, InfoGAN):
        codes["continuous"] = torch.zeros(rows * 10, model.continuous_codes, device=device)
    return codes


if __name__ == "__main__":
    main()
