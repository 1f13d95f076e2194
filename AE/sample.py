"""Generate images from a trained autoencoder by decoding codes drawn from the Gaussian fitted to its
training codes (saved with the model's weights). An autoencoder has no prior of its own: this is the simplest
sampler that lands where the decoder has seen codes.

    python AE/sample.py AE/results/mnist-linear-n16/checkpoint.pt --num 64 --out samples.png   # a grid
    python AE/sample.py AE/results/mnist-linear-n16/checkpoint.pt --num 10000 --out samples.pt # float N x C x H x W in [0, 1]
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any working directory

import torch

from common import InputError
from common.figures import check_samples_path, write_samples
from common.utils import add_sample_flags, choose_device, load_trained_model
from AE.model import make_autoencoder


def main():
    parser = argparse.ArgumentParser(description="Sample images from a trained autoencoder.")
    add_sample_flags(parser)
    args = parser.parse_args()
    try:
        check_samples_path(args.out)
        model, _ = load_trained_model(args.checkpoint, "AE", make_autoencoder, choose_device(args.device))
        generator = torch.Generator().manual_seed(args.seed)
        images = torch.cat([model.sample(min(args.batch_size, args.num - start), generator=generator).cpu()
                            for start in range(0, args.num, args.batch_size)])
        write_samples(images, args.out)
        print(f"wrote {args.num} samples {tuple(images.shape[1:])} to {args.out}")
    except InputError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
