"""Generate images from a trained autoencoder by decoding codes drawn from the Gaussian fitted to
its training codes (saved with the model's weights). An autoencoder has no prior of its own: this is
the simplest sampler that lands where the decoder has seen codes.

    python AE/sample.py AE/results/mnist-linear-n16/checkpoint.pt --num 64 --out grid.png
    python AE/sample.py AE/results/mnist-linear-n16/checkpoint.pt --num 10000 --out samples.pt

A .png gets a grid, a .pt the float tensor (N, C, H, W) in [0, 1]. The VAE and GAN folders take the
same arguments.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any directory

import torch

from common.pictures import write_samples
from common.run import (add_sample_flags, choose_device, FlagParser, load_trained_model,
                        run_script, samples_path)
from AE.model import make_autoencoder


def main():
    parser = FlagParser(description="Sample images from a trained autoencoder.")
    add_sample_flags(parser)
    run_script(sample_images, parser.parse_args())


def sample_images(args):
    """Write the samples the flags ask for."""
    out = samples_path(args)  # checks --num, --batch-size and --out before any work
    model, _ = load_trained_model(args.checkpoint, "AE", make_autoencoder,
                                  choose_device(args.device))
    generator = torch.Generator().manual_seed(args.seed)
    counts = [min(args.batch_size, args.num - start)
              for start in range(0, args.num, args.batch_size)]  # batch by batch
    images = torch.cat([model.sample(count, generator=generator).cpu() for count in counts])
    write_samples(images, out)
    print(f"wrote {args.num} samples {tuple(images.shape[1:])} to {out}")


if __name__ == "__main__":
    main()
