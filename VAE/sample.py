"""Generate images from a trained VAE without training.

    python VAE/sample.py VAE/results/mnist-mlp-z20/checkpoint.pt --num 64 --out grid.png
    python VAE/sample.py VAE/results/mnist-mlp-z20/checkpoint.pt --num 10000 --out samples.pt

A .png gets a grid, a .pt the float tensor (N, C, H, W) in [0, 1]. Each image is the decoder's mean
E[x|z] for z ~ N(0, I). The GAN and AE folders take the same arguments.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any directory

import torch

from common.pictures import write_samples
from common.run import (add_sample_flags, choose_device, FlagParser, load_trained_model,
                        run_script, samples_path)
from VAE.model import VAE


def main():
    parser = FlagParser(description="Sample images from a trained VAE.")
    add_sample_flags(parser)
    run_script(sample_images, parser.parse_args())


def sample_images(args):
    """Write the samples the flags ask for."""
    out = samples_path(args)  # checks --num, --batch-size and --out before any work
    model, _ = load_trained_model(args.checkpoint, "VAE", VAE, choose_device(args.device))
    torch.manual_seed(args.seed)
    counts = [min(args.batch_size, args.num - start)
              for start in range(0, args.num, args.batch_size)]  # batch by batch
    images = torch.cat([model.sample(count).cpu() for count in counts])
    write_samples(images, out)
    print(f"wrote {args.num} samples {tuple(images.shape[1:])} to {out}")


if __name__ == "__main__":
    main()
