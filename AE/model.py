"""Autoencoders, and PCA as the baseline they have to beat.

Hinton & Salakhutdinov, "Reducing the Dimensionality of Data with Neural Networks", Science 2006,
showed that a deep autoencoder compresses MNIST far better than PCA with the same number of codes.
An encoder f maps an image x to a code z, a decoder g maps it back, and both are trained to minimise

    loss = recon(x, g(f(x))) + code_l2 * ||z||^2

where recon is the binary cross-entropy on pixels in [0, 1] (or the squared error), and the optional
L2 term pulls the codes toward 0, so that a Gaussian fitted to them is a usable sampler. It is meant
for unbounded codes: on sigmoid codes, 0 is where the sigmoid saturates, so it would push them into
the flat end where they stop learning (train.py warns about that pair).

Defines:
    ConvAE    fully convolutional: DownBlocks shrink the image to 4x4 while the channels grow;
              the code is that small image with many channels; UpBlocks mirror it back. No linear
              layers.
    LinearAE  the same conv trunk with one linear layer into an n-dimensional code and one back out.
    PCA       the optimal *linear* autoencoder with n codes (Eckart-Young): the top n eigenvectors
              of the covariance, i.e. the right singular vectors of the centred data.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from common.blocks import DownBlock, UpBlock, num_halvings
from common.pictures import principal_axes


def conv_trunk(channels, size, base_channels):
    """The encoder's DownBlocks and the decoder's mirror UpBlocks, and the bottleneck's channels."""
    halvings = num_halvings(size)
    widths = [base_channels * 2 ** i for i in range(halvings)]  # 32x32: 32, 64, 128
    # (B, 32, 16, 16) (B, 64, 8, 8) (B, 128, 4, 4)
    down = nn.Sequential(*[DownBlock(channels if i == 0 else widths[i - 1], widths[i],
                                     batch_norm=i > 0) for i in range(halvings)])
    # (B, 64, 8, 8) (B, 32, 16, 16), then (B, C, 32, 32): logits
    up = nn.Sequential(*[UpBlock(widths[i], widths[i - 1]) for i in range(halvings - 1, 0, -1)],
                       nn.ConvTranspose2d(widths[0], channels, 4, stride=2, padding=1))
    return down, up, widths[-1]


class Autoencoder(nn.Module):
    """What both autoencoders share: the code activation, the loss, and sampling from a Gaussian
    fitted to the codes."""

    def __init__(self, code_activation="none", code_l2=0.0, recon_loss="bce"):
        super().__init__()
        if code_activation not in ("none", "sigmoid"):
            raise ValueError(f"code_activation must be 'none' or 'sigmoid', not "
                             f"{code_activation!r}")
        if recon_loss not in ("bce", "mse"):
            raise ValueError(f"recon_loss must be 'bce' or 'mse', not {recon_loss!r}")
        self.code_activation, self.code_l2, self.recon_loss = code_activation, code_l2, recon_loss

    def squash(self, z):
        # sigmoid(z) keeps every code in (0, 1): a bounded code space, easy to grid over
        return torch.sigmoid(z) if self.code_activation == "sigmoid" else z

    def reconstruct(self, x):
        """The decoded image in [0, 1]."""
        return torch.sigmoid(self.decode(self.encode(x)))

    def loss(self, x):
        """Mean over the batch of the per-image sums: the total and its parts."""
        z = self.encode(x)
        logits = self.decode(z)
        if self.recon_loss == "bce":
            # recon = -sum_i [ x_i log y_i + (1 - x_i) log(1 - y_i) ],  y = sigmoid(logits)
            bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
            recon = bce.flatten(1).sum(1).mean()
        else:
            # recon = sum_i (x_i - y_i)^2
            recon = (torch.sigmoid(logits) - x).square().flatten(1).sum(1).mean()
        # code_l2 * ||z||^2
        penalty = self.code_l2 * z.square().flatten(1).sum(1).mean()
        return {"total": recon + penalty, "recon": recon, "code_l2": penalty}

    def add_code_gaussian(self):
        """N(code_mean, code_covariance) over the flattened codes, saved with the weights: an
        autoencoder has no prior of its own, and this is the simplest sampler that lands where the
        decoder has seen codes."""
        size = math.prod(self.code_shape)
        self.register_buffer("code_mean", torch.zeros(size))
        self.register_buffer("code_covariance", torch.eye(size))

    @torch.no_grad()
    def fit_code_gaussian(self, codes):
        """Fit the sampler's Gaussian to codes (N, *code_shape), in float64."""
        codes = codes.flatten(1).double()
        self.code_mean.copy_(codes.mean(0))
        self.code_covariance.copy_(torch.cov(codes.T).reshape(codes.shape[1], codes.shape[1]))

    @torch.no_grad()
    def sample(self, count=None, codes=None, generator=None):
        """Images in [0, 1] decoded from the given codes (B, *code_shape), or from `count` codes
        drawn from the fitted Gaussian (with `generator`, a CPU torch.Generator, if given)."""
        if codes is None:
            mean, covariance = self.code_mean.double().cpu(), self.code_covariance.double().cpu()
            # z = mean + L eps with L L^T = covariance; the jitter keeps L defined for flat codes
            jitter = 1e-6 * torch.eye(len(mean), dtype=covariance.dtype)
            cholesky = torch.linalg.cholesky(covariance + jitter)
            eps = torch.randn(count, len(mean), generator=generator, dtype=covariance.dtype)
            codes = (mean + eps @ cholesky.T).float().view(count, *self.code_shape)
            codes = codes.to(self.code_mean.device)
        return torch.sigmoid(self.decode(codes))


class ConvAE(Autoencoder):
    """Fully convolutional: the code is the (B, 128, 4, 4) feature map at 32x32 (2,048 numbers)."""

    def __init__(self, image_shape=(1, 32, 32), base_channels=32, **loss_options):
        super().__init__(**loss_options)
        channels, size, _ = image_shape
        self.encoder, self.decoder, width = conv_trunk(channels, size, base_channels)
        self.code_shape = (width, 4, 4)
        self.add_code_gaussian()

    def encode(self, x):
        return self.squash(self.encoder(x))                         # (B, 128, 4, 4)

    def decode(self, z):
        return self.decoder(z)                                      # (B, C, H, W): logits


class LinearAE(Autoencoder):
    """The conv trunk with a linear bottleneck of code_dim numbers."""

    def __init__(self, image_shape=(1, 32, 32), code_dim=16, base_channels=32, **loss_options):
        super().__init__(**loss_options)
        channels, size, _ = image_shape
        down, up, width = conv_trunk(channels, size, base_channels)
        self.encoder = nn.Sequential(down, nn.Flatten(),
                                     nn.Linear(width * 4 * 4, code_dim))          # (B, n)
        self.decoder = nn.Sequential(nn.Linear(code_dim, width * 4 * 4), nn.ReLU(),  # (B, 128*4*4)
                                     nn.Unflatten(1, (width, 4, 4)), up)          # (B, C, H, W)
        self.code_shape = (code_dim,)
        self.add_code_gaussian()

    def encode(self, x):
        return self.squash(self.encoder(x))                         # (B, n)

    def decode(self, z):
        return self.decoder(z)                                      # (B, C, H, W): logits


AUTOENCODERS = {"linear": LinearAE, "conv": ConvAE}  # by the name --arch gives


def make_autoencoder(arch, image_shape, code_dim, **options):
    """LinearAE with code_dim codes, or ConvAE (whose code size follows from the image size)."""
    if arch == "linear":
        return LinearAE(image_shape, code_dim, **options)
    if arch == "conv":
        return ConvAE(image_shape, **options)
    raise ValueError(f"arch must be 'linear' or 'conv', not {arch!r}")


class PCA:
    """Principal component analysis as a linear autoencoder: z = V^T (x - m), x' = m + V z, with V
    the top `components` right singular vectors of the centred data. No linear map with that many
    codes has a smaller squared reconstruction error (Eckart-Young), which makes it the bar for the
    autoencoders."""

    def __init__(self, components):
        self.components = components

    def fit(self, x, **options):
        """x: (N, D) float; principal_axes finds the mean and the axes (options: its own)."""
        self.mean, self.basis = principal_axes(x, self.components, **options)  # (D,), (D, n)
        return self

    def encode(self, x):
        return (x.double() - self.mean) @ self.basis               # (N, n)

    def decode(self, z):
        return z @ self.basis.T + self.mean                        # (N, D)

    def reconstruct(self, x):
        return self.decode(self.encode(x)).to(x.dtype)
