"""Estimate the test-set log-likelihood of a trained VAE with the importance-weighted bound.

    python VAE/evaluate.py VAE/results/mnist-conv-z20-binarized/checkpoint.pt --samples 1000

Prints, per image of the first --images test images: the -ELBO (k = 1) and the importance-
weighted estimate of -log p(x) with k = --samples (Burda et al., arXiv:1509.00519), prepared as in
training (for a --binarize run, the same fixed binarization), over the original 28x28 area for
padded MNIST. What the figure means depends on the likelihood:
    Bernoulli on binarized images   -log p(x) in nats: the "NLL" papers report for binarized MNIST
    Bernoulli on continuous pixels  a bound in nats that compares only with runs on the same data:
                                    a Bernoulli is not a distribution over non-binary pixels
    Gaussian                        bits per dimension of the 8-bit images, with uniform
                                    dequantization and the log 256 term (VAE.model.bits_per_dim)
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any directory

import torch

from common.data import load_dataset, original_area
from common.run import (POSITIVE, check_ranges, choose_device, FlagParser, load_trained_model,
                        run_script)
from VAE.model import VAE, binarize_once, bits_per_dim, dequantize


def main():
    parser = FlagParser(description="Importance-weighted NLL of a trained VAE.")
    parser.add_argument("checkpoint")
    parser.add_argument("--samples", type=int, default=1000, help="importance samples k per image")
    parser.add_argument("--images", type=int, default=1000, help="how many test images (the first)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    run_script(estimate, parser.parse_args())


def estimate(args):
    """Print the bounds the flags ask for."""
    check_ranges(args, {"samples": POSITIVE, "images": POSITIVE})
    device = choose_device(args.device)
    model, checkpoint = load_trained_model(args.checkpoint, "VAE", VAE, device)
    run = checkpoint["args"]
    images, _ = load_dataset(run["dataset"], run["data_root"], run["image_size"], train=False)
    if run["binarize"]:
        images = binarize_once(images)
    images = images[:args.images]
    area = original_area(run["dataset"], images.shape[-1])
    pixels = images[0, ..., area, area].numel()
    torch.manual_seed(args.seed)
    gaussian = model.likelihood == "gaussian"
    # A density needs its 8-bit data spread over each value's bin; Batches would give x / 255
    x_all = dequantize(images, torch.Generator().manual_seed(args.seed)) if gaussian \
        else images.float() / 255
    started = time.time()
    elbo, iwae = 0.0, 0.0
    for x in x_all.split(args.batch_size):
        x = x.to(device)
        elbo += model.log_likelihood(x, samples=1, area=area).sum().item()
        iwae += model.log_likelihood(x, samples=args.samples, area=area).sum().item()
    count = len(images)
    elbo, iwae = -elbo / count, -iwae / count
    height, width = images[0, 0, area, area].shape
    where = (f"{Path(args.checkpoint)} (epoch {checkpoint['epoch']}, {run['dataset']}"
             f"{', binarized' if run['binarize'] else ''}), {count} test images, "
             f"{height}x{width} pixels each")
    seconds = f"({time.time() - started:.0f} s)"
    if gaussian:
        print(f"{where}: {bits_per_dim(elbo, pixels):.4f} bits/dim from the ELBO, "
              f"{bits_per_dim(iwae, pixels):.4f} bits/dim from the importance-weighted bound "
              f"(k={args.samples}), dequantized {seconds}")
    elif run["binarize"]:
        print(f"{where}: -ELBO {elbo:.2f} nats, importance-weighted NLL (k={args.samples}) "
              f"{iwae:.2f} nats {seconds}")
    else:
        print(f"{where}: -ELBO {elbo:.2f} nats, importance-weighted bound (k={args.samples}) "
              f"{iwae:.2f} nats on continuous pixels (not an NLL: train with --binarize for that) "
              f"{seconds}")


if __name__ == "__main__":
    main()
