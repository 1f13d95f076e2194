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
from common.utils import choose_device, load_checkpoint, load_weights
from VAE.model import VAE


def main():
    parser = argparse.ArgumentParser(description="Sample images from a trained VAE.")
    parser.add_argument("checkpoint")
    parser.add_argument("--num", type=int, default=64, help="how many images")
    parser.add_argument("--out", default="samples.png", help="a .png file (grid) or a .pt file (tensor)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    args = parser.parse_args()
    try:
        check_samples_path(args.out)
        checkpoint = load_checkpoint(args.checkpoint, family="VAE")
        device = choose_device(args.device)
        model = VAE(**checkpoint["model_config"])
        load_weights(model, checkpoint["model"], args.checkpoint)
        model.to(device).eval()
        torch.manual_seed(args.seed)
        images = torch.cat([model.sample(min(args.batch_size, args.num - start)).cpu()
                            for start in range(0, args.num, args.batch_size)])
        write_samples(images, args.out)
        print(f"wrote {args.num} samples {tuple(images.shape[1:])} to {args.out}")
    except InputError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
