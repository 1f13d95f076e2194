"""Train a DCGAN-architecture GAN with the GAN, WGAN or WGAN-GP loss, and measure it by FID.

    python GAN/train.py --epochs 20                          # DCGAN (non-saturating loss) on MNIST
    python GAN/train.py --loss wgan-gp                       # critic with gradient penalty, 5 critic steps per G step
    python GAN/train.py --loss wgan --downsample maxpool     # weight clipping; conv + max-pool in the critic
    python GAN/train.py --dataset cifar10 --width 64
    python GAN/train.py --resume GAN/results/mnist-gan/checkpoint.pt --epochs 40

An epoch is one pass of the discriminator over the training set; the generator steps once every
--n-critic discriminator steps. Everything goes to --out (default GAN/results/<dataset>-<loss>/):
    log.csv               one row per epoch: D and G losses, D(x), D(G(z)), the Wasserstein estimate
                          (critics only), the gradient penalty (wgan-gp), FID of 2,000 samples every
                          --fid-every epochs, time
    fid.csv               at the end: FID of --fid-samples samples against the test set, the real floor,
                          and the share of each class among the samples (mode collapse shows here)
    checkpoint.pt         both networks, both optimizers, epoch, args and random states, rewritten each epoch
    frames/samples_NNN.png, samples.png, training.gif    generated from a fixed z, every epoch
    loss_curves.png       D and G losses per epoch; fid_curve.png: the 2,000-sample FID over training
FID is computed in the feature space of a small classifier trained on the dataset's labels (common/fid.py);
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
from common.data import Batches, load_dataset
from common.fid import SampleScorer
from common.figures import save_curves, save_gif
from common.utils import (add_shared_flags, append_csv, choose_device, load_weights, print_progress,
                          read_csv, rng_states, save_checkpoint, seed_everything, set_rng_states, start_run)
from GAN.model import GAN, LOSSES

HERE = Path(__file__).resolve().parent

# Each loss trains with its paper's optimizer: DCGAN (Radford et al.), WGAN (Arjovsky et al., Algorithm 1)
# and WGAN-GP (Gulrajani et al., Algorithm 1). --lr and --n-critic override them.
PAPER_SETTINGS = {
    "gan": dict(optimizer="Adam", lr=2e-4, betas=(0.5, 0.999), n_critic=1),
    "wgan": dict(optimizer="RMSprop", lr=5e-5, n_critic=5),
    "wgan-gp": dict(optimizer="Adam", lr=1e-4, betas=(0.0, 0.9), n_critic=5),
}


def main():
    settings = "; ".join(f"{loss}: {s['optimizer']} lr {s['lr']:g}" + (f" betas {s['betas']}" if "betas" in s else "")
                         + f", {s['n_critic']} D step(s) per G step" for loss, s in PAPER_SETTINGS.items())
    parser = argparse.ArgumentParser(description="Train a GAN.", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     epilog=f"Defaults per --loss (the papers'): {settings}.")
    add_shared_flags(parser, HERE, epochs=20, batch_size=64, lr=None, latent_dim=100)
    parser.add_argument("--loss", default="gan", choices=LOSSES,
                        help="gan: non-saturating GAN loss; wgan: weight clipping; wgan-gp: gradient penalty")
    parser.add_argument("--width", type=int, default=32,
                        help="channels of the largest feature maps (DCGAN used 64 at 64x64 pixels; 32 suits 32x32 digits "
                             "and trains 2.4x faster on a CPU)")
    parser.add_argument("--downsample", default="stride", choices=["stride", "maxpool"],
                        help="how the discriminator halves the resolution: strided 4x4 conv, or 3x3 conv + 2x2 max-pool")
    parser.add_argument("--n-critic", type=int, default=None, help="D steps per G step; None: the loss's default (below)")
    parser.add_argument("--clip", type=float, default=0.01, help="wgan: critic weights are clipped to [-clip, clip]")
    parser.add_argument("--gp-weight", type=float, default=10.0, help="wgan-gp: lambda, the gradient penalty's weight")
    parser.add_argument("--fid-every", type=int, default=5, help="log the FID of 2,000 samples every this many epochs (0: never)")
    parser.add_argument("--fid-samples", type=int, default=10_000, help="samples for the FID at the end of the run (0: none)")
    args = parser.parse_args()
    try:
        train(args)
    except InputError as error:
        sys.exit(f"error: {error}")


def train(args):
    args, checkpoint, out = start_run(args, "GAN", HERE / "results" / f"{args.dataset}-{args.loss}")
    device = choose_device(args.device)
    seed_everything(args.seed)
    settings = PAPER_SETTINGS[args.loss]
    args.lr = args.lr or settings["lr"]
    args.n_critic = args.n_critic or settings["n_critic"]

    train_images, train_labels = load_dataset(args.dataset, args.data_root, args.image_size, train=True)
    model_config = dict(image_shape=list(train_images.shape[1:]), latent_dim=args.latent_dim, width=args.width,
                        loss=args.loss, downsample=args.downsample, clip=args.clip, gp_weight=args.gp_weight)
    model = GAN(**model_config).to(device)
    fused = device.type in ("cpu", "cuda")
    if settings["optimizer"] == "Adam":
        d_optimizer = torch.optim.Adam(model.discriminator.parameters(), lr=args.lr, betas=settings["betas"], fused=fused)
        g_optimizer = torch.optim.Adam(model.generator.parameters(), lr=args.lr, betas=settings["betas"], fused=fused)
    else:
        d_optimizer = torch.optim.RMSprop(model.discriminator.parameters(), lr=args.lr)
        g_optimizer = torch.optim.RMSprop(model.generator.parameters(), lr=args.lr)
    batches = Batches(train_images.to(device), None, args.batch_size, seed=args.seed, value_range=(-1.0, 1.0))
    fixed_z = torch.randn(64, args.latent_dim, generator=torch.Generator().manual_seed(args.seed)).to(device)
    scorer = None
    if train_labels is not None and (args.fid_every or args.fid_samples):
        scorer = SampleScorer(args.dataset, args.data_root, args.image_size, device)
    print(f"GAN ({args.loss}, G {sum(p.numel() for p in model.generator.parameters()):,} + "
          f"D {sum(p.numel() for p in model.discriminator.parameters()):,} parameters) on {args.dataset} "
          f"{tuple(train_images.shape[1:])}: {len(train_images)} images, {settings['optimizer']} lr {args.lr:g}, "
          f"{args.n_critic} D step(s) per G step, device {device}, writing to {out}"
          + ("; no FID: the dataset has no labels" if train_labels is None else ""))

    start_epoch = 1
    if checkpoint is not None:
        load_weights(model, checkpoint["model"], args.resume)
        d_optimizer.load_state_dict(checkpoint["d_optimizer"])
        g_optimizer.load_state_dict(checkpoint["g_optimizer"])
        batches.generator.set_state(checkpoint["batch_generator"])
        set_rng_states(checkpoint["rng"])
        start_epoch = checkpoint["epoch"] + 1

    for epoch in range(start_epoch, args.epochs + 1):
        model.train()
        sums, g_steps = {"d_loss": 0.0, "d_real": 0.0, "d_fake": 0.0, "wasserstein": 0.0, "gradient_penalty": 0.0}, 0
        g_loss_sum = 0.0
        started = last_report = time.time()
        for step, (real, _) in enumerate(batches, 1):
            generator_steps_now = ((epoch - 1) * len(batches) + step) % args.n_critic == 0  # counted over the run
            with torch.set_grad_enabled(generator_steps_now):  # G's graph is needed only for its own step
                fake = model.generator(model.noise(len(real)))

            # ---- D phase: raise D(x), lower D(G(z)) ----
            d_parts = model.discriminator_loss(real, fake.detach())
            d_optimizer.zero_grad(set_to_none=True)
            d_parts["total"].backward()
            d_optimizer.step()
            if args.loss == "wgan":
                model.clip_critic_weights()

            # ---- G phase, every n_critic D steps: raise D(G(z)) under the D just updated ----
            if generator_steps_now:
                g_loss = model.generator_loss(fake)["total"]
                g_optimizer.zero_grad(set_to_none=True)
                g_loss.backward()
                g_optimizer.step()
                g_loss_sum += g_loss.detach()
                g_steps += 1

            sums["d_loss"] += d_parts["total"].detach()  # stays on the device: no GPU sync per step
            for name in ("d_real", "d_fake", "wasserstein", "gradient_penalty"):
                if name in d_parts:
                    sums[name] += d_parts[name].detach()
            if time.time() - last_report > 10 or step == len(batches):  # .item() waits for the GPU: not every step
                last_report = time.time()
                means = {"d_loss": sums["d_loss"].item() / step, "g_loss": float(g_loss_sum) / max(g_steps, 1)}
                if not all(map(math.isfinite, means.values())):
                    raise InputError(f"the losses became {means} in epoch {epoch}, step {step}; stopped (the last "
                                     f"good checkpoint in {out} is kept). Try a lower --lr")
                print_progress(epoch, args.epochs, step, len(batches), args.batch_size, started,
                               {**means, "D(x)": sums["d_real"].item() / step, "D(G(z))": sums["d_fake"].item() / step})
        seconds = time.time() - started
        row = {"epoch": epoch, "d_loss": sums["d_loss"].item() / len(batches), "g_loss": float(g_loss_sum) / max(g_steps, 1),
               "d_real": sums["d_real"].item() / len(batches), "d_fake": sums["d_fake"].item() / len(batches),
               "wasserstein": sums["wasserstein"].item() / len(batches) if args.loss != "gan" else "",
               "gradient_penalty": sums["gradient_penalty"].item() / len(batches) if args.loss == "wgan-gp" else ""}

        # ---- evaluate: FID of 2,000 samples, cheap enough to watch quality over training ----
        model.eval()
        row["fid_2k"] = ""
        if scorer and args.fid_every and (epoch % args.fid_every == 0 or epoch == args.epochs):
            row["fid_2k"], _ = scorer.score(generate(model, 2000, args.batch_size * 16, seed=epoch))
        print(f"epoch {epoch}/{args.epochs} | D loss {row['d_loss']:.4f} | G loss {row['g_loss']:.4f} | "
              f"D(x) {row['d_real']:.3f} | D(G(z)) {row['d_fake']:.3f}"
              + (f" | W estimate {row['wasserstein']:.4f}" if args.loss != "gan" else "")
              + (f" | FID (2k samples) {row['fid_2k']:.3f}" if row["fid_2k"] != "" else "")
              + f" | {seconds:.1f} s, {len(batches) * args.batch_size / seconds:,.0f} img/s")

        # ---- pictures, log row and checkpoint ----
        save_image(model.sample(z=fixed_z), out / "frames" / f"samples_{epoch:03d}.png", nrow=8)
        append_csv(out / "log.csv", {name: f"{value:.5g}" if isinstance(value, float) else value for name, value in row.items()}
                   | {"seconds": f"{seconds:.2f}", "images_per_second": f"{len(batches) * args.batch_size / seconds:.0f}"})
        save_checkpoint(out / "checkpoint.pt", {
            "family": "GAN", "model": model.state_dict(), "model_config": model_config,
            "d_optimizer": d_optimizer.state_dict(), "g_optimizer": g_optimizer.state_dict(), "epoch": epoch,
            "args": vars(args), "rng": rng_states(), "batch_generator": batches.generator.get_state()})

    # ---- end of run: the full FID and class histogram, figures ----
    if scorer and args.fid_samples:
        fid, shares = scorer.score(generate(model, args.fid_samples, args.batch_size * 16, seed=args.seed))
        floor = scorer.info["floor"]
        append_csv(out / "fid.csv", {"epoch": args.epochs, "samples": args.fid_samples, "fid": f"{fid:.4f}",
                                     "floor": f"{floor:.4f}", "fid_over_floor": f"{fid / floor:.2f}",
                                     **{f"class_{label}": f"{share:.4f}" for label, share in enumerate(shares)}})
        print(f"FID of {args.fid_samples} samples against the test set: {fid:.3f} (real floor {floor:.3f}, "
              f"{fid / floor:.2f}x); class shares: " + " ".join(f"{c}:{s:.3f}" for c, s in enumerate(shares)))
    frames = sorted((out / "frames").glob("samples_*.png"))
    if frames:
        save_gif(frames, out / "training.gif")
        (out / "samples.png").write_bytes(frames[-1].read_bytes())
    rows = read_csv(out / "log.csv") if (out / "log.csv").exists() else []
    if rows:
        save_curves(out / "loss_curves.png", {"D loss": [float(r["d_loss"]) for r in rows],
                                              "G loss": [float(r["g_loss"]) for r in rows]}, title="losses per epoch")
        fids = [float(r["fid_2k"]) for r in rows if r["fid_2k"]]
        if fids:
            save_curves(out / "fid_curve.png", {"FID, 2,000 samples": fids}, title=f"FID every {args.fid_every} epochs")
    print(f"done: figures, log.csv and checkpoint.pt in {out}")


@torch.no_grad()
def generate(model, count, batch_size, seed):
    """`count` images in [0, 1] from seeded noise, so that FIDs of one model are repeatable."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(count, model.latent_dim, generator=generator).to(next(model.parameters()).device)
    return torch.cat([model.sample(z=chunk) for chunk in z.split(batch_size)])


if __name__ == "__main__":
    main()
