"""Seconds per training epoch of the MLP VAE: this repository's loop against the usual DataLoader loop.

    python VAE/benchmark.py --data-root ../shared/data --epochs 2

Every loop trains the same model (784-400-20 MLP VAE on 28x28 MNIST, batch 128, Adam 1e-3) on the same
device, one after the other in this process. The reference is the pytorch/examples VAE's loop:
DataLoader(datasets.MNIST(transform=ToTensor()), shuffle=True), which decodes every image through PIL
every epoch, and the default Adam. VAE/train.py slices batches from the uint8 tensor decoded once (the
one-off load time is printed too) and uses the fused Adam kernel; the middle row separates the two gains.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any working directory

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from common.data import Batches, load_dataset
from common.utils import choose_device
from VAE.model import VAE

HERE = Path(__file__).resolve().parent


def train_epoch(model, optimizer, batches, device):
    """One epoch of plain VAE training; returns (seconds, images)."""
    started, images = time.time(), 0
    for x, _ in batches:
        x = x.to(device)
        loss = model.loss(x)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        images += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.time() - started, images


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=str(HERE.parent / "data"))
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed for each loop (the mean is reported)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    args = parser.parse_args()
    device = choose_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    started = time.time()
    images, _ = load_dataset("mnist", args.data_root, image_size=28, train=True)
    ours = Batches(images.to(device), None, args.batch_size, drop_last=False)
    print(f"ours: decoding MNIST into a uint8 tensor once took {time.time() - started:.2f} s")
    reference = DataLoader(datasets.MNIST(args.data_root, train=True, download=False, transform=transforms.ToTensor()),
                           batch_size=args.batch_size, shuffle=True)

    results = {}
    loops = [("DataLoader + ToTensor, Adam (reference)", reference, False),
             ("uint8 tensor batches, Adam", ours, False),
             ("uint8 tensor batches, fused Adam (VAE/train.py)", ours, True)]
    for name, batches, fused in loops:
        torch.manual_seed(0)
        model = VAE((1, 28, 28), latent_dim=20, arch="mlp").to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
        times = []
        for epoch in range(args.epochs):
            seconds, count = train_epoch(model, optimizer, batches, device)
            times.append(seconds)
            print(f"{name}: epoch {epoch + 1}: {seconds:.2f} s ({count / seconds:,.0f} img/s)")
        results[name] = sum(times) / len(times)
    reference_seconds = results[loops[0][0]]
    for name, seconds in results.items():
        print(f"{name}: {seconds:.2f} s per epoch, {reference_seconds / seconds:.2f}x the reference's speed")


if __name__ == "__main__":
    main()
