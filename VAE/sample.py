"""Generate images from a trained VAE without training.

    python VAE/sample.py VAE/results/mnist-mlp-z20/checkpoint.pt --num 64 --out samples.png   # a grid
    python VAE/sample.py VAE/results/mnist-mlp-z20/checkpoint.pt --num 10000 --out samples.pt # float N x C x H x W in [0, 1]

Each image is the decoder's mean E[x|z] for z ~ N(0, I). The GAN and AE folders take the same arguments.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any working directory

import torch

from common import InputError
from common.figures import check_samples_path, write_samples
from common.utils import add_sample_flags, choose_device, load_trained_model
from VAE.model import VAE


def main():
    parser = argparse.ArgumentParser(description="Sample images from a trained VAE.")
    add_sample_flags(parser)
    args = parser.parse_args()
    try:
        check_samples_path(args.out)
        model, _ = load_trained_model(args.checkpoint, "VAE", VAE, choose_device(args.device))
        torch.manual_seed(args.seed)
        images = torch.cat([model.sample(min(args.batch_size, args.num - start)).cpu()
                            for start in range(0, args.num, args.batch_size)])
        write_samples(images, args.out)
        print(f"wrote {args.num} samples {tuple(images.shape[1:])} to {args.out}")
    except InputError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
