"""Training speed of every model on the machine it runs on: one script (not collected by pytest).

    python tests/benchmark.py --data-root DATA              # every model, on the device torch sees
    python tests/benchmark.py --data-root DATA --models vae-mlp dcgan-w64
    python tests/benchmark.py --data-root DATA --dcgan-epochs 50     # on a GPU: all GPU figures

Each model's figure is its train.py run as a user runs it (its own process, no FID), read from the
log.csv it writes: images per second of the training loop in its second epoch (the first warms up),
with the batch slicing and every step included, and start-up, evaluation and pictures not. An epoch
is the first --images MNIST training images (default: 6,400 on a CPU, all 60,000 on a GPU), written
as IDX files to a temporary folder with the first 1,000 test images.

In the same run, on a CPU, against a peer's loop as its own script runs it (10 warm-up batches):
    vae-mlp    on a full epoch of MNIST, against pytorch/examples' vae/main.py: its 784-400-20
               model, summed BCE + KL, DataLoader(MNIST, ToTensor) shuffled, Adam, loss.item()
               every step; and the share of the CPU's float32 matmul peak (2048 x 2048 products)
               that our training matmuls reach. The thread count is printed first: quote it.
    dcgan-w64  (DCGAN's channel counts at 32x32) against PyTorch-GAN's dcgan.py: its networks,
               BCELoss and Adam, its DataLoader with Resize(32), ToTensor and Normalize.
On a CPU the conv models are also timed with --channels-last. On a CUDA GPU, every model also with
--amp, --channels-last and --compile, and DCGAN at 64x64 RGB (CelebA's size, on random images
written to a temporary folder). --dcgan-epochs N then trains the MNIST DCGAN for N epochs with the
fastest flags and prints the wall time of the whole command.
"""

import argparse
import csv
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch
from PIL import Image
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from common.run import choose_device
from VAE.model import VAE

WARM_UP = 10  # batches of a reference loop not timed: the first allocations and kernel choices
GAN_QUICK = ["--fid-every", "0", "--fid-samples", "0"]
MODELS = {  # name: (script, flags)
    "ae": ("AE/train.py", ["--embedding", "pca"]),
    "vae-mlp": ("VAE/train.py", ["--embedding", "pca"]),
    "vae-conv": ("VAE/train.py", ["--embedding", "pca", "--arch", "conv"]),
    "dcgan": ("GAN/train.py", GAN_QUICK),
    "dcgan-w64": ("GAN/train.py", [*GAN_QUICK, "--width", "64"]),
    "wgan-gp": ("GAN/train.py", [*GAN_QUICK, "--loss", "wgan-gp"]),
    "cgan": ("GAN/train.py", [*GAN_QUICK, "--model", "cgan"]),
    "acgan": ("GAN/train.py", [*GAN_QUICK, "--model", "acgan"]),
    "infogan": ("GAN/train.py", [*GAN_QUICK, "--model", "infogan"]),
}
CONV_ON_CPU = ("vae-conv", "dcgan", "dcgan-w64")  # also timed with --channels-last on a CPU
GPU_VARIANTS = {
    "plain": [],
    "amp": ["--amp"],
    "channels-last": ["--channels-last"],
    "compile": ["--compile"],
    "all three": ["--amp", "--channels-last", "--compile"],
}


def mnist_subset(data_root, folder, train_images, test_images=1000):
    """The first images of MNIST's training and test sets, as a new MNIST/raw/ of IDX files."""
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, count, prefix in [(True, train_images, "train"), (False, test_images, "t10k")]:
        dataset = datasets.MNIST(data_root, train=split, download=False)
        for kind, array in [
            ("images-idx3", dataset.data[:count].numpy()),
            ("labels-idx1", dataset.targets[:count].numpy()),
        ]:
            with open(
                raw / f"{prefix}-{kind}-ubyte", "wb"
            ) as file:  # magic (0, 0, uint8, ndim), sizes, bytes
                file.write(
                    struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
                    + struct.pack(f">{array.ndim}I", *array.shape)
                )
                file.write(array.astype(np.uint8).tobytes())
    return str(folder)


def train_py_images_per_second(script, flags, scratch, device, epochs=2):
    """Run script for `epochs` epochs in its own process: images/s of its last epoch and the
    seconds of all its training epochs (from log.csv), and the wall time of the whole command."""
    out = Path(tempfile.mkdtemp(dir=scratch))
    command = [
        sys.executable,
        str(ROOT / script),
        "--epochs",
        str(epochs),
        "--device",
        device.type,
        "--out",
        str(out),
        *flags,
    ]
    started = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with open(out / "log.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return (
        float(rows[-1]["images_per_second"]),
        sum(float(row["seconds"]) for row in rows),
        time.time() - started,
    )


def matmul_peak(device, size=2048, repeats=20):
    """Float32 FLOP/s of large square matrix products on this device: the best of five timings."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best = 0.0
    for _ in range(5):
        synchronize(device)
        started = time.time()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        best = max(best, 2 * size**3 * repeats / (time.time() - started))
    return best


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def training_flops_per_image(model):
    """Matmul FLOPs of one training image through an MLP: 2 in out for the forward, as many for the
    weights' gradients and for the inputs' gradients, except the first layer's (the data needs
    none)."""
    layers = [module for module in model.modules() if isinstance(module, nn.Linear)]
    products = [layer.in_features * layer.out_features for layer in layers]
    return 6 * sum(products) - 2 * products[0]


class ExamplesVAE(nn.Module):
    """pytorch/examples' vae/main.py model: 784-400-(20, 20) encoder, 20-400-784 sigmoid decoder."""

    def __init__(self):
        super().__init__()
        self.hidden, self.mean, self.log_variance = (
            nn.Linear(784, 400),
            nn.Linear(400, 20),
            nn.Linear(400, 20),
        )
        self.decoder = nn.Sequential(
            nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784), nn.Sigmoid()
        )

    def forward(self, x):
        h = torch.relu(self.hidden(x.view(-1, 784)))
        mu, logvar = self.mean(h), self.log_variance(h)
        return self.decoder(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)), mu, logvar


def examples_vae_images_per_second(data_root, device, batch_size=128):
    """pytorch/examples' vae/main.py training loop, as the script runs it, for one epoch: summed
    BCE + KL, loss.item() every step (its running loss)."""
    loader = DataLoader(
        datasets.MNIST(data_root, train=True, download=False, transform=transforms.ToTensor()),
        batch_size=batch_size,
        shuffle=True,
    )
    torch.manual_seed(1)
    model = ExamplesVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    started, images, running_loss = time.time(), 0, 0.0
    for step, (x, _) in enumerate(loader):
        if step == WARM_UP:
            started, images = time.time(), 0
        x = x.to(device)
        optimizer.zero_grad()
        reconstruction, mu, logvar = model(x)
        loss = F.binary_cross_entropy(
            reconstruction, x.view(-1, 784), reduction="sum"
        ) - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        loss.backward()
        running_loss += loss.item()
        optimizer.step()
        images += len(x)
    synchronize(device)
    return images / (time.time() - started)


class PyTorchGANGenerator(nn.Module):
    """dcgan.py's generator: Linear(100 -> 128 x 8 x 8), two nearest-neighbour upsamplings each
    followed by a 3x3 conv, BatchNorm and LeakyReLU, then a 3x3 conv and Tanh."""

    def __init__(self, latent_dim=100):
        super().__init__()
        self.project = nn.Linear(latent_dim, 128 * 8 * 8)  # (B, 128*8*8)
        self.net = nn.Sequential(
            nn.BatchNorm2d(128),
            nn.Upsample(scale_factor=2),  # (B, 128, 16, 16)
            nn.Conv2d(128, 128, 3, padding=1),
            nn.BatchNorm2d(128),
            nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2),  # (B, 128, 32, 32)
            nn.Conv2d(128, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.LeakyReLU(0.2),  # (B, 64, 32, 32)
            nn.Conv2d(64, 1, 3, padding=1),
            nn.Tanh(),
        )  # (B, 1, 32, 32)

    def forward(self, z):
        return self.net(self.project(z).view(-1, 128, 8, 8))


class PyTorchGANDiscriminator(nn.Module):
    """dcgan.py's discriminator: four stride-2 3x3 convs (16, 32, 64, 128 channels) with LeakyReLU,
    Dropout2d(0.25) and BatchNorm, a linear layer and a sigmoid."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 1
        for out_channels, batch_norm in [
            (16, False),
            (32, True),
            (64, True),
            (128, False),
        ]:  # 32 -> 16 -> 8 -> 4 -> 2
            layers += [
                nn.Conv2d(channels, out_channels, 3, 2, 1),
                nn.LeakyReLU(0.2),
                nn.Dropout2d(0.25),
            ]
            layers += [nn.BatchNorm2d(out_channels)] if batch_norm else []
            channels = out_channels
        self.net = nn.Sequential(
            *layers, nn.Flatten(), nn.Linear(128 * 2 * 2, 1), nn.Sigmoid()
        )  # (B, 1)

    def forward(self, x):
        return self.net(x)


def pytorch_gan_dcgan_images_per_second(data_root, batch_size=64, latent_dim=100):
    """dcgan.py's loop (G step, then D step, as it writes them) for one epoch, on the CPU."""
    loader = DataLoader(
        datasets.MNIST(
            data_root,
            train=True,
            download=False,
            transform=transforms.Compose(
                [transforms.Resize(32), transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]
            ),
        ),
        batch_size=batch_size,
        shuffle=True,
    )
    torch.manual_seed(0)
    generator, discriminator = PyTorchGANGenerator(latent_dim), PyTorchGANDiscriminator()
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCELoss()
    started, images = time.time(), 0
    for step, (real, _) in enumerate(loader):
        if step == WARM_UP:
            started, images = time.time(), 0
        valid, fake_target = torch.ones(len(real), 1), torch.zeros(len(real), 1)
        fake = generator(torch.randn(len(real), latent_dim))
        g_loss = bce(discriminator(fake), valid)
        g_optimizer.zero_grad()
        g_loss.backward()
        g_optimizer.step()
        d_loss = (
            bce(discriminator(real), valid) + bce(discriminator(fake.detach()), fake_target)
        ) / 2
        d_optimizer.zero_grad()
        d_loss.backward()
        d_optimizer.step()
        images += len(real)
    return images / (time.time() - started)


def random_rgb_folder(folder, count=20_000, size=64):
    """CelebA's shape without CelebA: `count` random 64x64 RGB PNGs (speed ignores the content)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            folder / f"{i:06d}.png"
        )
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=str(ROOT / "data"), help="holds MNIST/raw/")
    parser.add_argument(
        "--images",
        type=int,
        default=None,
        help="training images per timed epoch; None: 6,400 on a CPU, 60,000 on a GPU",
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--dcgan-epochs",
        type=int,
        default=0,
        help="then train the MNIST DCGAN this long, timed (0: no)",
    )
    args = parser.parse_args()
    device = choose_device(args.device)
    hardware = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    images = args.images or (60_000 if device.type == "cuda" else 6_400)
    print(f"{hardware}, torch {torch.__version__}; one epoch = {images:,} MNIST training images")
    with tempfile.TemporaryDirectory() as scratch:
        data_root = mnist_subset(args.data_root, Path(scratch) / "mnist", images)
        data = ["--data-root", data_root]
        results = {}
        for name in args.models:
            script, flags = MODELS[name]
            variants = (
                GPU_VARIANTS
                if device.type == "cuda"
                else {
                    "plain": [],
                    **({"channels-last": ["--channels-last"]} if name in CONV_ON_CPU else {}),
                }
            )
            for variant, extra in variants.items():
                results[name, variant], _, _ = train_py_images_per_second(
                    script, [*data, *flags, *extra], scratch, device
                )
                print(
                    f"{name:10s} {variant:14s} {results[name, variant]:9,.0f} images/s", flush=True
                )

        if device.type == "cpu" and "vae-mlp" in args.models:  # both on a full epoch of MNIST
            examples = examples_vae_images_per_second(args.data_root, device)
            ours, _, _ = train_py_images_per_second(
                "VAE/train.py",
                ["--data-root", args.data_root, *MODELS["vae-mlp"][1]],
                scratch,
                device,
            )
            peak = matmul_peak(device)
            reached = ours * training_flops_per_image(VAE((1, 28, 28), latent_dim=20, arch="mlp"))
            print(
                f"vae-mlp, full epoch of 60,000: {ours:,.0f} images/s, {ours / examples:.2f}x "
                f"pytorch/examples' vae/main.py ({examples:,.0f} images/s); its matmuls reach "
                f"{reached / 1e9:.1f} GFLOP/s, {reached / peak:.0%} of the matmul peak "
                f"({peak / 1e9:.1f} GFLOP/s)"
            )
        if device.type == "cpu" and "dcgan-w64" in args.models:
            reference = pytorch_gan_dcgan_images_per_second(data_root)
            print(
                f"dcgan-w64: {results['dcgan-w64', 'plain'] / reference:.2f}x PyTorch-GAN's "
                f"dcgan.py setup ({reference:,.0f} images/s); "
                f"{results['dcgan-w64', 'channels-last'] / reference:.2f}x with --channels-last"
            )

        if device.type == "cuda":
            folder = random_rgb_folder(Path(scratch) / "rgb64")
            for variant, extra in GPU_VARIANTS.items():
                speed, _, _ = train_py_images_per_second(
                    "GAN/train.py",
                    [
                        "--dataset",
                        "folder",
                        "--data-root",
                        str(folder),
                        "--width",
                        "64",
                        *GAN_QUICK,
                        *extra,
                    ],
                    scratch,
                    device,
                )
                print(
                    f"dcgan 64x64 RGB, width 64, {variant:14s} {speed:9,.0f} images/s", flush=True
                )
        if args.dcgan_epochs:  # the whole of MNIST
            fastest = max(
                (v for m, v in results if m == "dcgan"),
                key=lambda v: results["dcgan", v],
                default="plain",
            )
            flags = ["--data-root", args.data_root, *GPU_VARIANTS[fastest]]
            speed, training, wall = train_py_images_per_second(
                "GAN/train.py", flags, scratch, device, epochs=args.dcgan_epochs
            )
            print(
                f"GAN/train.py --epochs {args.dcgan_epochs} "
                f"{' '.join(GPU_VARIANTS.get(fastest, []))}: {training:.0f} s in its training "
                f"epochs, {wall:.0f} s of wall time for the whole command (start-up, the FID "
                f"classifier if not cached, FID every 5 epochs and at the end), "
                f"{speed:,.0f} images/s"
            )


if __name__ == "__main__":
    main()
