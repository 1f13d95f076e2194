"""Generative adversarial networks with DCGAN architectures, trained with one of three losses.

A generator G maps noise z ~ N(0, I) to an image; a discriminator (or critic) D scores images. They play

    GAN (Goodfellow et al., arXiv:1406.2661):   min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]

The networks are DCGAN's (Radford et al., "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", arXiv:1511.06434): transposed convs with BatchNorm and ReLU up to a Tanh
in G, strided convs with LeakyReLU(0.2) in D, every weight drawn from N(0, 0.02).

--loss picks the objective. With s = D(x) a raw score (a logit for "gan") and sigma the logistic function:

    gan      (non-saturating, as in the GAN paper's practical advice)
             L_D = -log sigma(D(x)) - log(1 - sigma(D(G(z))))
             L_G = -log sigma(D(G(z)))                      instead of log(1 - sigma(D(G(z)))), which saturates
    wgan     (Arjovsky et al., "Wasserstein GAN", arXiv:1701.07875): D is a critic f kept K-Lipschitz by
             clipping every weight to [-c, c] after each step, and f(x) - f(G(z)) estimates W(p_data, p_G)
             L_D = f(G(z)) - f(x)                           L_G = -f(G(z))
    wgan-gp  (Gulrajani et al., "Improved Training of Wasserstein GANs", arXiv:1704.00028): a penalty on
             the critic's gradient at random interpolates x^ = e x + (1 - e) G(z), e ~ U[0, 1], replaces clipping
             L_D = f(G(z)) - f(x) + lambda (||grad f(x^)||_2 - 1)^2     L_G = -f(G(z))
             The penalty is per sample, so the critic has no BatchNorm (it would mix samples).

All losses are means over the batch. Defines: Generator, Discriminator, and GAN, which holds both and has
discriminator_loss / generator_loss (each returns its total and named parts), clip_critic_weights, sample.
"""
import torch
import torch.nn.functional as F
from torch import nn

from common.blocks import DownBlock, UpBlock, num_halvings

LOSSES = ("gan", "wgan", "wgan-gp")


class Generator(nn.Module):
    """z (B, latent_dim) -> image (B, C, S, S) in [-1, 1]; shape comments are for 32x32 and width w."""

    def __init__(self, latent_dim=100, channels=1, image_size=32, width=64):
        super().__init__()
        doublings = num_halvings(image_size)                  # 4 -> S: 3 doublings at 32 px, 4 at 64 px
        top = width * 2 ** (doublings - 1)
        layers = [nn.Unflatten(1, (latent_dim, 1, 1)),          # (B, latent, 1, 1)
                  nn.ConvTranspose2d(latent_dim, top, 4, bias=False), nn.BatchNorm2d(top), nn.ReLU()]  # (B, 4w, 4, 4)
        for i in range(doublings - 1):                         # (B, 2w, 8, 8) (B, w, 16, 16)
            layers.append(UpBlock(top >> i, top >> (i + 1)))
        layers += [nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Tanh()]  # (B, C, 32, 32)
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    """image (B, C, S, S) -> score (B,): a logit for the GAN loss, a critic value for the Wasserstein ones.

    `features` is the body up to the 4x4 map, kept separate so that extra heads can share it.
    """

    def __init__(self, channels=1, image_size=32, width=64, batch_norm=True, downsample="stride"):
        super().__init__()
        halvings = num_halvings(image_size)
        # No BatchNorm on the first block: DCGAN found that normalising the input layer makes training unstable.
        blocks = [DownBlock(channels, width, batch_norm=False, downsample=downsample)]   # (B, w, 16, 16)
        for i in range(halvings - 1):                                                    # (B, 2w, 8, 8) (B, 4w, 4, 4)
            blocks.append(DownBlock(width << i, width << (i + 1), batch_norm, downsample))
        self.features = nn.Sequential(*blocks)
        self.feature_channels = width << (halvings - 1)
        self.score = nn.Conv2d(self.feature_channels, 1, 4)                              # (B, 1, 1, 1)

    def forward(self, x):
        return self.score(self.features(x)).flatten()                                    # (B,)


def init_dcgan_weights(module):
    """DCGAN's initialisation: conv weights ~ N(0, 0.02); BatchNorm scales ~ N(1, 0.02) and shifts 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class GAN(nn.Module):
    def __init__(self, image_shape=(1, 32, 32), latent_dim=100, width=64, loss="gan", downsample="stride",
                 clip=0.01, gp_weight=10.0):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")
        channels, size, _ = image_shape
        self.latent_dim, self.loss_type, self.clip, self.gp_weight = latent_dim, loss, clip, gp_weight
        self.generator = Generator(latent_dim, channels, size, width)
        self.discriminator = Discriminator(channels, size, width, batch_norm=loss != "wgan-gp", downsample=downsample)
        self.apply(init_dcgan_weights)

    def noise(self, count):
        return torch.randn(count, self.latent_dim, device=self.generator.net[1].weight.device)

    @torch.no_grad()
    def sample(self, count=None, z=None):
        """Images in [0, 1] from z (or from `count` fresh noise vectors)."""
        z = self.noise(count) if z is None else z
        return (self.generator(z) + 1) / 2

    def discriminator_loss(self, real, fake):
        """L_D on a real and a generated batch (pass fake detached). Parts: D(x) and D(G(z)) as batch means
        (probabilities for "gan", critic values otherwise), and the Wasserstein estimate for the critics."""
        real_score, fake_score = self.discriminator(real), self.discriminator(fake)
        if self.loss_type == "gan":
            # L_D = -log sigma(D(x)) - log(1 - sigma(D(G(z)))), with -log sigma(s) = softplus(-s), -log(1 - sigma(s)) = softplus(s)
            total = F.softplus(-real_score).mean() + F.softplus(fake_score).mean()
            return {"total": total, "d_real": torch.sigmoid(real_score).mean(), "d_fake": torch.sigmoid(fake_score).mean()}
        # W(p_data, p_G) ~ E[f(x)] - E[f(G(z))]
        wasserstein = real_score.mean() - fake_score.mean()
        parts = {"d_real": real_score.mean(), "d_fake": fake_score.mean(), "wasserstein": wasserstein}
        if self.loss_type == "wgan":
            # L_D = f(G(z)) - f(x)
            return {"total": -wasserstein, **parts}
        penalty = self.gradient_penalty(real, fake)
        # L_D = f(G(z)) - f(x) + lambda (||grad f(x^)||_2 - 1)^2
        return {"total": -wasserstein + self.gp_weight * penalty, "gradient_penalty": penalty, **parts}

    def gradient_penalty(self, real, fake):
        """E[(||grad_x^ f(x^)||_2 - 1)^2] at x^ = e x + (1 - e) G(z), one e ~ U[0, 1] per sample."""
        e = torch.rand(len(real), 1, 1, 1, device=real.device)
        between = (e * real + (1 - e) * fake).requires_grad_(True)
        # create_graph: the penalty is itself differentiated when L_D is minimised
        grad, = torch.autograd.grad(self.discriminator(between).sum(), between, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    def generator_loss(self, fake):
        """L_G on a generated batch that still carries the generator's graph."""
        fake_score = self.discriminator(fake)
        if self.loss_type == "gan":
            # L_G = -log sigma(D(G(z))), the non-saturating loss
            return {"total": F.softplus(-fake_score).mean()}
        # L_G = -f(G(z))
        return {"total": -fake_score.mean()}

    @torch.no_grad()
    def clip_critic_weights(self):
        """WGAN: w <- clip(w, -c, c) for every critic parameter, after each critic step."""
        for parameter in self.discriminator.parameters():
            parameter.clamp_(-self.clip, self.clip)
