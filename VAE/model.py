"""Variational autoencoder: Kingma & Welling, "Auto-Encoding Variational Bayes", arXiv:1312.6114.

An encoder q(z|x) = N(mu(x), diag sigma^2(x)) and a decoder p(x|z) are trained together by
maximising the evidence lower bound (ELBO) on log p(x), with the prior p(z) = N(0, I):

    log p(x) >= ELBO(x) = E_q(z|x)[ log p(x|z) ] - KL( q(z|x) || p(z) )

This file minimises, per image and in nats,

    loss = recon_weight * ( -log p(x|z) ) + beta * KL,     z = mu + sigma * eps,  eps ~ N(0, I)

beta = recon_weight = 1 is the VAE; beta = 0 drops the KL term (a plain, noisy autoencoder);
recon_weight = 0 keeps only the KL term (q collapses onto the prior). beta > 1 is the beta-VAE
(Higgins et al., 2017).

p(x|z) is Bernoulli on pixels in [0, 1] (binary cross-entropy, the usual choice for MNIST) or
Gaussian with one learned standard deviation (for RGB photos; Rybkin et al., arXiv:2006.13202). For
reporting, the importance-weighted bound of Burda et al. (arXiv:1509.00519) gives a tighter estimate
of log p(x).

How the figures are stated: -ELBO and -log p(x) in nats per image. With Bernoulli p(x|z) on
binarized images, -log p(x) is the usual "NLL"; on continuous pixels the Bernoulli is not a
distribution over them, so its bound only compares with runs on the same data. A Gaussian p(x|z) is
a density on pixels scaled to [0, 1]: for 8-bit images it is stated in bits per dimension, with
uniform dequantization y = (x + u) / 256, u ~ U[0, 1) and the log 256 of the scaling (bits_per_dim).
Given z the pixels are independent, so the bound restricted to some pixels (MNIST's 28x28 inside its
32x32 padding) is exact for those pixels.

Defines: MLPEncoder/MLPDecoder (784-400-latent), ConvEncoder/ConvDecoder (DownBlock/UpBlock stacks),
and VAE, with encode / reparameterize / decode, loss, kl_divergence, log_likelihood
(importance-weighted) and sample; binarize_once (the fixed binarized test set) and bits_per_dim.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from common.blocks import DownBlock, UpBlock, num_halvings


class MLPEncoder(nn.Module):
    def __init__(self, image_shape, latent_dim, hidden_dim=400):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),                                              # (B, C*H*W)
            nn.Linear(math.prod(image_shape), hidden_dim), nn.ReLU(),  # (B, hidden)
            nn.Linear(hidden_dim, 2 * latent_dim),                     # (B, 2*latent): mu, log var
        )

    def forward(self, x):
        return self.net(x).chunk(2, dim=1)


class MLPDecoder(nn.Module):
    def __init__(self, image_shape, latent_dim, hidden_dim=400):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU())  # (B, hidden)
        self.to_pixels = nn.Linear(hidden_dim, math.prod(image_shape))             # (B, C*H*W)
        self.image_shape = image_shape

    def forward(self, z):
        return self.to_pixels(self.hidden(z)).view(-1, *self.image_shape)  # (B, C, H, W)


class ConvEncoder(nn.Module):
    """DownBlocks halve the image down to 4x4 while the channels double, then one linear layer to
    (mu, log sigma^2)."""

    def __init__(self, image_shape, latent_dim, base_channels=32):
        super().__init__()
        channels, size, _ = image_shape
        blocks, width = [], base_channels
        for i in range(num_halvings(size)):  # 32x32: (B, 32, 16, 16) (B, 64, 8, 8) (B, 128, 4, 4)
            blocks.append(DownBlock(channels if i == 0 else width // 2, width, batch_norm=i > 0))
            width *= 2
        self.blocks = nn.Sequential(*blocks)
        self.to_latent = nn.Linear(width // 2 * 4 * 4, 2 * latent_dim)  # (B, 2*latent)

    def forward(self, x):
        return self.to_latent(self.blocks(x).flatten(1)).chunk(2, dim=1)


class ConvDecoder(nn.Module):
    """The encoder's mirror: a linear layer to a 4x4 feature map, then UpBlocks doubling it; the
    last doubling is a bare transposed conv that outputs pixels (logits or means), with no norm or
    ReLU. depth > 1 adds depth - 1 size-keeping 3x3 convs (BatchNorm, ReLU) at each resolution below
    the last: more capacity for the decoder alone, whose likelihood term dominates the bound."""

    def __init__(self, image_shape, latent_dim, base_channels=32, depth=1):
        super().__init__()
        channels, size, _ = image_shape
        halvings = num_halvings(size)
        self.top_channels = base_channels * 2 ** (halvings - 1)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, self.top_channels * 4 * 4),
                                         nn.ReLU())
        blocks, width = same_size_convs(self.top_channels, depth - 1), self.top_channels
        for _ in range(halvings - 1):  # 32x32: (B, 64, 8, 8) (B, 32, 16, 16)
            blocks += [UpBlock(width, width // 2), *same_size_convs(width // 2, depth - 1)]
            width //= 2
        self.blocks = nn.Sequential(*blocks)
        self.to_pixels = nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1)  # (B, C, H, W)

    def forward(self, z):
        h = self.from_latent(z).view(-1, self.top_channels, 4, 4)  # (B, 128, 4, 4) at 32x32
        return self.to_pixels(self.blocks(h))


def same_size_convs(width, count):
    """count layers (B, width, H, W) -> (B, width, H, W): 3x3 conv, BatchNorm, ReLU."""
    layers = []
    for _ in range(count):
        layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU()]
    return layers


class VAE(nn.Module):
    def __init__(self, image_shape=(1, 32, 32), latent_dim=20, arch="mlp", likelihood="bernoulli",
                 beta=1.0, recon_weight=1.0, hidden_dim=400, base_channels=32, decoder_depth=1):
        super().__init__()
        self.image_shape, self.latent_dim = tuple(image_shape), latent_dim
        self.likelihood, self.beta, self.recon_weight = likelihood, beta, recon_weight
        if arch == "mlp":
            self.encoder = MLPEncoder(self.image_shape, latent_dim, hidden_dim)
            self.decoder = MLPDecoder(self.image_shape, latent_dim, hidden_dim)
        elif arch == "conv":
            self.encoder = ConvEncoder(self.image_shape, latent_dim, base_channels)
            self.decoder = ConvDecoder(self.image_shape, latent_dim, base_channels, decoder_depth)
        else:
            raise ValueError(f"arch must be 'mlp' or 'conv', not {arch!r}")
        if likelihood == "gaussian":  # one learned log sigma, all pixels: no hand-tuned KL weight
            self.log_sigma = nn.Parameter(torch.zeros(()))
        elif likelihood != "bernoulli":
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', not {likelihood!r}")

    @torch.no_grad()
    def init_output_bias(self, images):
        """Start the decoder's output at the mean of uint8 images (N, C, H, W), as in Burda et
        al.'s code: the first steps then learn the digits instead of the background. Per pixel for
        the MLP, per channel for the conv decoder."""
        pixel_sums = sum(chunk.sum(0, dtype=torch.float64) for chunk in images.split(4096))
        pixel_means = (pixel_sums / (255 * len(images))).clamp(1e-3, 1 - 1e-3)  # (C, H, W)
        bias = torch.logit(pixel_means) if self.likelihood == "bernoulli" else pixel_means
        output_bias = self.decoder.to_pixels.bias
        per_pixel = output_bias.numel() == bias.numel()
        output_bias.copy_(bias.flatten() if per_pixel else bias.mean((1, 2)))

    def encode(self, x):
        return self.encoder(x)  # mu, log sigma^2: each (B, latent)

    def reparameterize(self, mu, logvar, noise=None):
        """noise: eps ~ N(0, I), (B, latent); None draws it here."""
        eps = torch.randn_like(mu) if noise is None else noise
        # z = mu + sigma * eps: the sample is a differentiable function of (mu, sigma)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z):
        return self.decoder(z)  # (B, C, H, W): Bernoulli logits, or Gaussian means

    def forward(self, x, noise=None):
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar, noise)), mu, logvar

    def mean_image(self, decoded):
        """E[x|z] in [0, 1], for pictures."""
        return torch.sigmoid(decoded) if self.likelihood == "bernoulli" else decoded.clamp(0, 1)

    def log_px_given_z(self, x, decoded):
        """log p(x|z) per image, in nats: (B,)."""
        if self.likelihood == "bernoulli":
            # log p(x|z) = sum_i x_i log y_i + (1 - x_i) log(1 - y_i),  y = sigmoid(logits)
            bce = F.binary_cross_entropy_with_logits(decoded, x, reduction="none")
            return -bce.flatten(1).sum(1)
        # log p(x|z) = sum_i -(x_i - m_i)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2
        squared = ((x - decoded) / self.log_sigma.exp()).square().flatten(1).sum(1)
        return -0.5 * squared - x[0].numel() * (self.log_sigma + 0.5 * math.log(2 * math.pi))

    def kl_divergence(self, mu, logvar):
        """KL(q(z|x) || p(z)) per image, in nats: (B,). The VAE paper, Appendix B."""
        # KL(N(mu, sigma^2) || N(0, 1)) = -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)
        return -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1)

    def loss(self, x, noise=None):
        """Mean over the batch, in nats per image: the weighted total and its unweighted parts.
        noise: the reparameterization's eps (B, latent), or None to draw it here."""
        decoded, mu, logvar = self(x, noise)
        recon = -self.log_px_given_z(x, decoded).mean()
        kl = self.kl_divergence(mu, logvar).mean()
        # loss = recon_weight * (-log p(x|z)) + beta * KL
        total = self.recon_weight * recon + self.beta * kl
        return {"total": total, "recon": recon, "kl": kl}

    @torch.no_grad()
    def log_likelihood(self, x, samples=1000, chunk=100, area=slice(None)):
        """Importance-weighted estimate of log p(x) per image (B,), in nats: a lower bound that
        tightens as the number of samples k grows; samples=1 gives the ELBO. area: the rows and
        columns of x it is for (all; MNIST's 28x28 inside its padding: slice(2, 30))."""
        mu, logvar = self.encode(x)
        std = torch.exp(0.5 * logvar)
        log_weights = []
        for start in range(0, samples, chunk):
            k = min(chunk, samples - start)
            eps = torch.randn(k, *mu.shape, device=x.device)            # (k, B, latent)
            z = mu + std * eps
            decoded = self.decode(z.flatten(0, 1))[..., area, area]      # (k*B, C, H, W)
            x_k = x.repeat(k, 1, 1, 1)[..., area, area]
            log_px_z = self.log_px_given_z(x_k, decoded).view(k, -1)
            # log p(z) - log q(z|x) for diagonal Gaussians; the log(2 pi) terms cancel
            log_pz = -0.5 * z.square().sum(2)
            log_qz = -0.5 * (eps.square() + logvar).sum(2)
            log_weights.append(log_px_z + log_pz - log_qz)               # (k, B)
        log_weights = torch.cat(log_weights)
        # log p(x) ~= log 1/k sum_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x)  (Burda et al., eq. 8)
        return torch.logsumexp(log_weights, dim=0) - math.log(samples)

    @torch.no_grad()
    def reconstruct(self, x):
        """E[x|z] in [0, 1] at z = the mean of q(z|x): (B, C, H, W), for pictures."""
        return self.mean_image(self.decode(self.encode(x)[0]))

    @torch.no_grad()
    def sample(self, count=None, z=None):
        """Images in [0, 1] decoded from z ~ N(0, I) (or from the given z): (count, C, H, W)."""
        if z is None:
            z = torch.randn(count, self.latent_dim, device=next(self.parameters()).device)
        return self.mean_image(self.decode(z))


def binarize_once(images):
    """One fixed Bernoulli draw of uint8 images: every evaluation sees the same binary test set."""
    draw = torch.Generator().manual_seed(12345)
    return (torch.bernoulli(images / 255, generator=draw) * 255).to(torch.uint8)


def dequantize(images, generator=None):
    """uint8 images -> y = (x + u) / 256, u ~ U[0, 1): each 8-bit value spread over its own bin."""
    return (images.float() + torch.rand(images.shape, generator=generator).to(images.device)) / 256


def bits_per_dim(neg_log_density, dims):
    """-log p(x) of 8-bit data, from a density's -log p(y) (nats per image) on dequantized y in
    [0, 1]^D: P(x) is the integral of p over x's bin, of volume 256^-D, so
    -log P(x) <= -log p(y) + D log 256 (Jensen, over u), then in bits per dimension."""
    # bits/dim = (-log p(y) + D log 256) / (D log 2)
    return (neg_log_density + dims * math.log(256)) / (dims * math.log(2))
