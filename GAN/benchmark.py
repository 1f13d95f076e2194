"""Training speed of DCGAN on 32x32 MNIST: GAN/train.py against the common reference script, in one process.

    python GAN/benchmark.py --data-root ../shared/data

The reference is PyTorch-GAN's implementations/dcgan/dcgan.py (github.com/eriklindernoren/PyTorch-GAN),
rebuilt here from its description: a generator of Linear(100 -> 128x8x8), two nearest-neighbour upsamplings
each followed by a 3x3 conv (128 and 64 channels), BatchNorm and LeakyReLU, then a 3x3 conv and Tanh; a
discriminator of four stride-2 3x3 convs (16, 32, 64, 128 channels) with LeakyReLU, Dropout2d(0.25) and
BatchNorm, a linear layer and a sigmoid; BCELoss, Adam(2e-4, betas 0.5, 0.999), batch 64, and a
DataLoader over torchvision's MNIST with Resize(32), ToTensor and Normalize, which decodes every image
through PIL every epoch. It is timed for --reference-batches batches.

Ours is GAN/train.py itself, run for one epoch (60,000 images, no FID) at each --widths value; its
images per second come from the log.csv it writes. Both sides include data loading, both the D and
the G step, and every per-step overhead.
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any working directory

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from common.utils import read_csv

HERE = Path(__file__).resolve().parent


class ReferenceGenerator(nn.Module):
    def __init__(self, latent_dim=100):
        super().__init__()
        self.project = nn.Linear(latent_dim, 128 * 8 * 8)                                  # (B, 128*8*8)
        self.net = nn.Sequential(
            nn.BatchNorm2d(128), nn.Upsample(scale_factor=2),                               # (B, 128, 16, 16)
            nn.Conv2d(128, 128, 3, padding=1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2),                                                    # (B, 128, 32, 32)
            nn.Conv2d(128, 64, 3, padding=1), nn.BatchNorm2d(64), nn.LeakyReLU(0.2),        # (B, 64, 32, 32)
            nn.Conv2d(64, 1, 3, padding=1), nn.Tanh())                                      # (B, 1, 32, 32)

    def forward(self, z):
        return self.net(self.project(z).view(-1, 128, 8, 8))


class ReferenceDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        layers, channels = [], 1
        for out_channels, batch_norm in [(16, False), (32, True), (64, True), (128, False)]:  # 32 -> 16 -> 8 -> 4 -> 2
            layers += [nn.Conv2d(channels, out_channels, 3, 2, 1), nn.LeakyReLU(0.2), nn.Dropout2d(0.25)]
            layers += [nn.BatchNorm2d(out_channels)] if batch_norm else []
            channels = out_channels
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 2 * 2, 1), nn.Sigmoid())  # (B, 1)

    def forward(self, x):
        return self.net(x)


def reference_images_per_second(data_root, batches, batch_size=64, latent_dim=100):
    loader = DataLoader(datasets.MNIST(data_root, train=True, download=False, transform=transforms.Compose([
        transforms.Resize(32), transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])),
        batch_size=batch_size, shuffle=True)
    generator, discriminator = ReferenceGenerator(latent_dim), ReferenceDiscriminator()
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCELoss()
    started, images = time.time(), 0
    for step, (real, _) in enumerate(loader):
        if step == batches:
            break
        valid, fake_target = torch.ones(len(real), 1), torch.zeros(len(real), 1)
        fake = generator(torch.randn(len(real), latent_dim))
        g_loss = bce(discriminator(fake), valid)
        g_optimizer.zero_grad()
        g_loss.backward()
        g_optimizer.step()
        d_loss = (bce(discriminator(real), valid) + bce(discriminator(fake.detach()), fake_target)) / 2
        d_optimizer.zero_grad()
        d_loss.backward()
        d_optimizer.step()
        images += len(real)
    return images / (time.time() - started)


def ours_images_per_second(data_root, width, out):
    """GAN/train.py run as a user runs it (its own process); the speed is its log.csv's, so start-up is not counted."""
    subprocess.run([sys.executable, str(HERE / "train.py"), "--data-root", data_root, "--epochs", "1", "--width",
                    str(width), "--device", "cpu", "--out", str(out), "--fid-every", "0", "--fid-samples", "0"], check=True)
    return float(read_csv(Path(out) / "log.csv")[-1]["images_per_second"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=str(HERE.parent / "data"))
    parser.add_argument("--reference-batches", type=int, default=200, help="batches of 64 timed for the reference")
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64], help="GAN/train.py --width values to time")
    args = parser.parse_args()
    print(f"CPU, torch {torch.__version__}, {torch.get_num_threads()} threads")
    torch.manual_seed(0)
    reference = reference_images_per_second(args.data_root, args.reference_batches)
    print(f"reference (PyTorch-GAN dcgan.py): {reference:,.0f} images/s")
    with tempfile.TemporaryDirectory() as scratch:
        for width in args.widths:
            ours = ours_images_per_second(args.data_root, width, Path(scratch) / f"width{width}")
            print(f"GAN/train.py --width {width}: {ours:,.0f} images/s, {ours / reference:.2f}x the reference")


if __name__ == "__main__":
    main()
