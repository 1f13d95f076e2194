"""Estimate the test-set log-likelihood of a trained VAE with the importance-weighted bound.

    python VAE/evaluate.py VAE/results/mnist-conv-z20/checkpoint.pt --samples 1000 --images 1000

Prints, in nats per image on the first --images test images: the -ELBO (k = 1) and the importance-weighted
estimate of -log p(x) with k = --samples (Burda et al., arXiv:1509.00519), which is what papers report as
"NLL". The test set is prepared as in training (for a --binarize run, the same fixed binarization).
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any working directory

import torch

from common import InputError
from common.data import Batches, load_dataset
from common.utils import choose_device, load_trained_model
from VAE.model import VAE
from VAE.train import binarize_once


def main():
    parser = argparse.ArgumentParser(description="Importance-weighted NLL of a trained VAE.")
    parser.add_argument("checkpoint")
    parser.add_argument("--samples", type=int, default=1000, help="importance samples k per image")
    parser.add_argument("--images", type=int, default=1000, help="how many test images (from the first)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    args = parser.parse_args()
    try:
        device = choose_device(args.device)
        model, checkpoint = load_trained_model(args.checkpoint, "VAE", VAE, device)
        run = checkpoint["args"]
        images, _ = load_dataset(run["dataset"], run["data_root"], run["image_size"], train=False)
    except InputError as error:
        sys.exit(f"error: {error}")
    if run["binarize"]:
        images = binarize_once(images)
    images = images[:args.images].to(device)
    torch.manual_seed(args.seed)
    started = time.time()
    elbo, iwae = 0.0, 0.0
    for x, _ in Batches(images, None, args.batch_size, shuffle=False, drop_last=False):
        elbo += model.log_likelihood(x, samples=1).sum().item()
        iwae += model.log_likelihood(x, samples=args.samples).sum().item()
    count = len(images)
    print(f"{Path(args.checkpoint)} (epoch {checkpoint['epoch']}, {run['dataset']}"
          f"{', binarized' if run['binarize'] else ''}), {count} test images: -ELBO {-elbo / count:.2f} nats, "
          f"importance-weighted NLL (k={args.samples}) {-iwae / count:.2f} nats ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
