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
             clipping each of its weights to [-c, c] after each step (not those of an extra head), and
             f(x) - f(G(z)) estimates W(p_data, p_G)
             L_D = f(G(z)) - f(x)                           L_G = -f(G(z))
    wgan-gp  (Gulrajani et al., "Improved Training of Wasserstein GANs", arXiv:1704.00028): a penalty on
             the critic's gradient at random interpolates x^ = e x + (1 - e) G(z), e ~ U[0, 1], replaces clipping
             L_D = f(G(z)) - f(x) + lambda (||grad f(x^)||_2 - 1)^2     L_G = -f(G(z))
             The penalty is per sample, so the critic has no BatchNorm (it would mix samples).

--model adds a code c that G takes beside z, and what D does with it (y: a class label; CE: cross-entropy):

    dcgan    no code.
    cgan     (Mirza & Osindero, "Conditional Generative Adversarial Nets", arXiv:1411.1784): G(z, y), and D
             sees y as ten one-hot planes stacked on the image, so it judges "a real image of class y".
    acgan    (Odena et al., "Conditional Image Synthesis with Auxiliary Classifier GANs", arXiv:1610.09585):
             G(z, y); D sees the image only and also predicts its class with a second head:
             L_D += CE(class(x), y) + CE(class(G(z, y)), y)      L_G += CE(class(G(z, y)), y)
    infogan  (Chen et al., "InfoGAN", arXiv:1606.03657): G(z, c) with c = (c1 ~ Cat(10), c2, c3 ~ U(-1, 1)),
             no labels. A head Q on D's body predicts c back from G(z, c); maximising
             L_I = E[log Q(c | G(z, c))] + H(c)  <=  I(c; G(z, c))
             keeps c readable from the image, so c1 tends to take the digit class (all ten digits in 1 of 10 seeds
             measured; in the others two similar digits share codes: docs/results.md). With Q a categorical for c1
             and a unit-variance Gaussian for c2, c3:
             L_D += lambda (CE(Q_1, c1) + sum_i (c_i - mu_i)^2 / 2)   and the same term in L_G.
             Two choices that are ours, not the paper's, each measured in docs/results.md to help c1 take the
             digit: in D's step Q reads the body's features detached (the body learns real-vs-fake only;
             q_trains_body=True undoes this), and c1 enters G as a one-hot times category_scale = 2 (1: the paper).

All losses are means over the batch, in nats. Defines: Generator, Discriminator, and GAN, which holds both
and has random_codes / generate / sample, discriminator_loss / generator_loss (each returns its total
and named parts), information_loss, encode_category and clip_critic_weights.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from common.blocks import DownBlock, UpBlock, num_halvings

LOSSES = ("gan", "wgan", "wgan-gp")
MODELS = ("dcgan", "cgan", "acgan", "infogan")


class Generator(nn.Module):
    """input (B, input_dim) -> image (B, C, S, S) in [-1, 1]: input is z, or z joined to a code.
    Shape comments are for 32x32 and width w."""

    def __init__(self, input_dim=100, channels=1, image_size=32, width=64):
        super().__init__()
        doublings = num_halvings(image_size)                  # 4 -> S: 3 doublings at 32 px, 4 at 64 px
        top = width * 2 ** (doublings - 1)
        layers = [nn.Unflatten(1, (input_dim, 1, 1)),           # (B, input, 1, 1)
                  nn.ConvTranspose2d(input_dim, top, 4, bias=False), nn.BatchNorm2d(top), nn.ReLU()]  # (B, 4w, 4, 4)
        for i in range(doublings - 1):                         # (B, 2w, 8, 8) (B, w, 16, 16)
            layers.append(UpBlock(top >> i, top >> (i + 1)))
        layers += [nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Tanh()]  # (B, C, 32, 32)
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    """image (B, C, S, S) [and its labels (B,)] -> (score (B,), head output (B, K) or None).

    The score is a logit for the GAN loss, a critic value for the Wasserstein ones. With label_planes > 0
    (cgan) the labels join the image as that many one-hot planes. `features` is the body up to the 4x4 map;
    `code`, when code_outputs > 0, is a second head on that body (ACGAN's class logits, InfoGAN's Q).
    """

    def __init__(self, channels=1, image_size=32, width=64, batch_norm=True, downsample="stride", code_outputs=0,
                 label_planes=0):
        super().__init__()
        self.label_planes = label_planes
        halvings = num_halvings(image_size)
        # No BatchNorm on the first block: DCGAN found that normalising the input layer makes training unstable.
        blocks = [DownBlock(channels + label_planes, width, batch_norm=False, downsample=downsample)]  # (B, w, 16, 16)
        for i in range(halvings - 1):                                                    # (B, 2w, 8, 8) (B, 4w, 4, 4)
            blocks.append(DownBlock(width << i, width << (i + 1), batch_norm, downsample))
        self.features = nn.Sequential(*blocks)
        top = width << (halvings - 1)
        self.score = nn.Conv2d(top, 1, 4)                                                # (B, 1, 1, 1)
        self.code = nn.Sequential(nn.Flatten(), nn.Linear(top * 4 * 4, 128), nn.LeakyReLU(0.2),  # (B, 128)
                                  nn.Linear(128, code_outputs)) if code_outputs else None         # (B, code_outputs)

    def forward(self, images, labels=None, detach_code=False):
        """detach_code: the code head reads the body's features without sending its gradient back into the body."""
        if self.label_planes:
            planes = F.one_hot(labels, self.label_planes).to(images.dtype)[:, :, None, None]  # (B, 10, 1, 1)
            images = torch.cat([images, planes.expand(-1, -1, *images.shape[2:])], 1)     # (B, C + 10, S, S)
        features = self.features(images)                                                   # (B, 4w, 4, 4)
        score = self.score(features).flatten()                                             # (B,)
        if detach_code:
            features = features.detach()
        return score, None if self.code is None else self.code(features)

    def critic_parameters(self):
        """The parameters the score depends on: the body and the score layer, not the code head."""
        return [*self.features.parameters(), *self.score.parameters()]


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
                 clip=0.01, gp_weight=10.0, variant="dcgan", num_classes=10, continuous_codes=2, code_weight=1.0,
                 category_scale=2.0, q_trains_body=False):
        super().__init__()
        if loss not in LOSSES or variant not in MODELS:
            raise ValueError(f"loss must be one of {LOSSES} and variant one of {MODELS}, not {loss!r}, {variant!r}")
        channels, size, _ = image_shape
        self.latent_dim, self.loss_type, self.clip, self.gp_weight = latent_dim, loss, clip, gp_weight
        self.variant, self.num_classes, self.continuous_codes, self.code_weight = variant, num_classes, continuous_codes, code_weight
        # InfoGAN's c1 enters G as category_scale times a one-hot. A plain one-hot (norm 1) has little say beside
        # z (norm ~ sqrt(62) ~ 8) in G's first layer, so the digit's coarse shape, learnt first, goes to z and c1
        # is left a style; scaled, c1 competes for the shape from the start. Too large (8) and G ignores z.
        self.category_scale = category_scale if variant == "infogan" else 1.0
        self.q_trains_body = q_trains_body
        code_dim = {"dcgan": 0, "cgan": num_classes, "acgan": num_classes, "infogan": num_classes + continuous_codes}[variant]
        self.generator = Generator(latent_dim + code_dim, channels, size, width)
        self.discriminator = Discriminator(channels, size, width, batch_norm=loss != "wgan-gp", downsample=downsample,
                                           code_outputs=code_dim if variant in ("acgan", "infogan") else 0,
                                           label_planes=num_classes if variant == "cgan" else 0)
        self.apply(init_dcgan_weights)

    def noise(self, count):
        return torch.randn(count, self.latent_dim, device=self.generator.net[1].weight.device)

    def random_codes(self, count, labels=None):
        """The code each fake image of a batch is made from: the real batch's labels (cgan, acgan), so that
        the fake classes follow the data's; a fresh c1 ~ Cat(10), c2, c3 ~ U(-1, 1) (infogan); none (dcgan)."""
        if self.variant in ("cgan", "acgan"):
            return {"labels": labels}
        if self.variant == "infogan":
            device = self.generator.net[1].weight.device
            return {"labels": torch.randint(self.num_classes, (count,), device=device),
                    "continuous": torch.rand(count, self.continuous_codes, device=device) * 2 - 1}
        return {}

    def generate(self, z, codes):
        """G(z, c): the class joins z as one-hot columns (InfoGAN's times category_scale), the continuous codes as they are."""
        inputs = [z]                                                                       # (B, latent)
        if "labels" in codes:
            inputs.append(self.category_scale * F.one_hot(codes["labels"], self.num_classes).to(z.dtype))  # (B, 10)
        if "continuous" in codes:
            inputs.append(codes["continuous"])                                             # (B, 2)
        return self.generator(torch.cat(inputs, 1))                                       # (B, C, S, S)

    @torch.no_grad()
    def sample(self, count=None, z=None, labels=None, continuous=None):
        """Images in [0, 1] from z (or `count` fresh noise vectors). Codes not given are drawn at random:
        uniform classes (cgan, acgan, infogan's c1), U(-1, 1) for infogan's c2, c3."""
        z = self.noise(count) if z is None else z
        codes = {}
        if self.variant != "dcgan":
            codes["labels"] = torch.randint(self.num_classes, (len(z),), device=z.device) if labels is None else labels
        if self.variant == "infogan":
            codes["continuous"] = torch.rand(len(z), self.continuous_codes, device=z.device) * 2 - 1 if continuous is None else continuous
        return (self.generate(z, codes) + 1) / 2

    def discriminator_loss(self, real, fake, real_labels=None, codes=None):
        """L_D on a real and a generated batch (pass fake detached, and the codes it was made from). Parts:
        D(x) and D(G(z)) as batch means (probabilities for "gan", critic values otherwise), the Wasserstein
        estimate and penalty for the critics, the class loss (acgan) or the information loss (infogan)."""
        codes = codes or {}
        real_score, real_code = self.discriminator(real, real_labels)
        # InfoGAN: in D's step Q learns from the body's features but does not shape them, so the body stays a
        # real-vs-fake detector and Q must find c1 in what that detector sees (the digit's shape), not in faint
        # detail the body would learn to pick up for Q alone. In G's step the gradient still runs through both.
        # q_trains_body=True is the paper's way: the information loss trains the body too.
        fake_score, fake_code = self.discriminator(fake, codes.get("labels"),
                                                   detach_code=self.variant == "infogan" and not self.q_trains_body)
        if self.loss_type == "gan":
            # L_D = -log sigma(D(x)) - log(1 - sigma(D(G(z)))), with -log sigma(s) = softplus(-s), -log(1 - sigma(s)) = softplus(s)
            total = F.softplus(-real_score).mean() + F.softplus(fake_score).mean()
            parts = {"d_real": torch.sigmoid(real_score).mean(), "d_fake": torch.sigmoid(fake_score).mean()}
        else:
            # W(p_data, p_G) ~ E[f(x)] - E[f(G(z))]
            wasserstein = real_score.mean() - fake_score.mean()
            parts = {"d_real": real_score.mean(), "d_fake": fake_score.mean(), "wasserstein": wasserstein}
            # L_D = f(G(z)) - f(x)
            total = -wasserstein
            if self.loss_type == "wgan-gp":
                penalty = self.gradient_penalty(real, fake, real_labels)
                # L_D = f(G(z)) - f(x) + lambda (||grad f(x^)||_2 - 1)^2
                total = total + self.gp_weight * penalty
                parts["gradient_penalty"] = penalty
        if self.variant == "acgan":
            # L_D += CE(class(x), y) + CE(class(G(z, y)), y)
            class_loss = F.cross_entropy(real_code, real_labels) + F.cross_entropy(fake_code, codes["labels"])
            total = total + self.code_weight * class_loss
            parts["class_loss"] = class_loss
        if self.variant == "infogan":
            information = self.information_loss(fake_code, codes)
            # L_D += lambda (CE(Q_1, c1) + sum_i (c_i - mu_i)^2 / 2 + const)
            total = total + self.code_weight * information
            # L_I = H(c) - that loss, with H(c) = log 10 + 2 log 2 for Cat(10) and two U(-1, 1): the bound on I(c; G(z, c))
            parts["information_bound"] = math.log(self.num_classes) + self.continuous_codes * math.log(2) - information
        return {"total": total, **parts}

    def gradient_penalty(self, real, fake, labels=None):
        """E[(||grad_x^ f(x^)||_2 - 1)^2] at x^ = e x + (1 - e) G(z), one e ~ U[0, 1] per sample."""
        e = torch.rand(len(real), 1, 1, 1, device=real.device)
        between = (e * real + (1 - e) * fake).requires_grad_(True)
        # create_graph: the penalty is itself differentiated when L_D is minimised
        grad, = torch.autograd.grad(self.discriminator(between, labels)[0].sum(), between, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    def generator_loss(self, fake, codes=None):
        """L_G on a generated batch that still carries the generator's graph, and the codes it was made from."""
        codes = codes or {}
        fake_score, fake_code = self.discriminator(fake, codes.get("labels"))
        if self.loss_type == "gan":
            # L_G = -log sigma(D(G(z))), the non-saturating loss
            total = F.softplus(-fake_score).mean()
        else:
            # L_G = -f(G(z))
            total = -fake_score.mean()
        if self.variant == "acgan":
            # L_G += CE(class(G(z, y)), y)
            total = total + self.code_weight * F.cross_entropy(fake_code, codes["labels"])
        if self.variant == "infogan":
            # L_G += lambda (CE(Q_1, c1) + sum_i (c_i - mu_i)^2 / 2 + const)
            total = total + self.code_weight * self.information_loss(fake_code, codes)
        return {"total": total}

    def information_loss(self, q_output, codes):
        """-E[log Q(c | G(z, c))] in nats per image: Q is a categorical over c1 (the first num_classes outputs)
        and a unit-variance Gaussian with mean mu_i over each continuous c_i (the rest)."""
        logits, means = q_output[:, :self.num_classes], q_output[:, self.num_classes:]
        # -log N(c_i; mu_i, 1) = (c_i - mu_i)^2 / 2 + log(2 pi) / 2
        gaussian = ((codes["continuous"] - means) ** 2 / 2 + math.log(2 * math.pi) / 2).sum(1)
        return F.cross_entropy(logits, codes["labels"]) + gaussian.mean()

    @torch.no_grad()
    def encode_category(self, images):
        """InfoGAN: the most likely c1 under Q for each image (B,), the code the digit class should map to."""
        return self.discriminator(images * 2 - 1)[1][:, :self.num_classes].argmax(1)

    @torch.no_grad()
    def clip_critic_weights(self):
        """WGAN: w <- clip(w, -c, c) for every parameter the critic's score depends on, after each critic step.
        ACGAN's class head and InfoGAN's Q are left alone: the Lipschitz bound is on f, not on them."""
        for parameter in self.discriminator.critic_parameters():
            parameter.clamp_(-self.clip, self.clip)
