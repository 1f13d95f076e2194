"""Generate images from a trained GAN without training.

    python GAN/sample.py GAN/results/mnist-gan/checkpoint.pt --num 64 --out samples.png    # a grid
    python GAN/sample.py GAN/results/mnist-gan/checkpoint.pt --num 10000 --out samples.pt  # float N x C x H x W in [0, 1]
    python common/fid.py samples.pt --data-root ../shared/data                             # its FID and class histogram

Each image is G(z) for z ~ N(0, I), with the generator's BatchNorm in eval mode (its running statistics).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any working directory

import torch

from common import InputError
from common.figures import check_samples_path, write_samples
from common.utils import add_sample_flags, choose_device, load_trained_model
from GAN.model import GAN


def main():
    parser = argparse.ArgumentParser(description="Sample images from a trained GAN.")
    add_sample_flags(parser)
    args = parser.parse_args()
    try:
        check_samples_path(args.out)
        model, _ = load_trained_model(args.checkpoint, "GAN", GAN, choose_device(args.device))
        torch.manual_seed(args.seed)
        images = torch.cat([model.sample(min(args.batch_size, args.num - start)).cpu()
                            for start in range(0, args.num, args.batch_size)])
        write_samples(images, args.out)
        print(f"wrote {args.num} samples {tuple(images.shape[1:])} to {args.out}")
    except InputError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
