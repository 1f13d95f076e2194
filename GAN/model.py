"""Generative adversarial networks with DCGAN architectures, trained with one of three losses.

A generator G maps noise z ~ N(0, I) (or U(-1, 1) per dimension, noise="uniform") to an image; a
discriminator (or critic) D scores images. They play

    GAN (Goodfellow et al., arXiv:1406.2661):   min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]

The networks are DCGAN's (Radford et al., "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", arXiv:1511.06434): transposed convs with BatchNorm and ReLU up to a Tanh
in G, strided convs with LeakyReLU(0.2) in D, every weight drawn from N(0, 0.02).

`loss` picks the objective. With s = D(x) a raw score (a logit for "gan") and sigma the logistic function:

    gan      (non-saturating, as in the GAN paper's practical advice)
             L_D = -log sigma(D(x)) - log(1 - sigma(D(G(z))))
             L_G = -log sigma(D(G(z)))                      instead of log(1 - sigma(D(G(z)))), which saturates
    wgan     (Arjovsky et al., "Wasserstein GAN", arXiv:1701.07875): D is a critic f kept K-Lipschitz by
             clipping each of its weights to [-c, c] after each step, and f(x) - f(G(z)) estimates W(p_data, p_G)
             L_D = f(G(z)) - f(x)                           L_G = -f(G(z))
    wgan-gp  (Gulrajani et al., "Improved Training of Wasserstein GANs", arXiv:1704.00028): a penalty on
             the critic's gradient at random interpolates x^ = e x + (1 - e) G(z), e ~ U[0, 1], replaces clipping
             L_D = f(G(z)) - f(x) + lambda (||grad f(x^)||_2 - 1)^2     L_G = -f(G(z))
             The penalty is per sample, so the critic has no BatchNorm (it would mix samples).

GAN is DCGAN: G(z), D(x). Three subclasses add a code c that G takes beside z, each with its paper's
equation in its docstring: CGAN (a class label, shown to D too), ACGAN (a class label that D must
recognise) and InfoGAN (codes without labels that D's head Q must read back). Each works with each loss.

All losses are means over the batch, in nats; each returns its total and its named parts.

Samples come from an exponential moving average of G's weights when ema_decay > 0 (Yazici et al., "The
Unusual Effectiveness of Averaging in GAN Training", arXiv:1806.04498): G's weights circle around an
equilibrium rather than settle in it, and their average lies nearer to it than any one step's. D trains
against the live G as before; the average only changes what is sampled.
"""
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from common.blocks import DownBlock, UpBlock, num_halvings

LOSSES = ("gan", "wgan", "wgan-gp")
NOISE_PRIORS = ("normal", "uniform")


class Generator(nn.Module):
    """input (B, input_dim) -> image (B, C, S, S) in [-1, 1]: input is z, or z joined to a code.
    Shape comments are for 32x32 and width w.

    hidden > 0 puts a fully connected layer of that many units (BatchNorm, ReLU) before the convolutions,
    as InfoGAN's MNIST generator has (1024, Table 1 of its paper): the code then chooses the 4x4 map
    through a hidden layer, not as one linear term added to z's.
    """

    def __init__(self, input_dim=100, channels=1, image_size=32, width=64, hidden=0):
        super().__init__()
        doublings = num_halvings(image_size)                  # 4 -> S: 3 doublings at 32 px, 4 at 64 px
        top = width * 2 ** (doublings - 1)
        # with hidden > 0: (B, hidden), then that is the input of the convolutions
        layers = [nn.Linear(input_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU()] if hidden else []
        input_dim = hidden or input_dim
        layers += [nn.Unflatten(1, (input_dim, 1, 1)),          # (B, input, 1, 1)
                   nn.ConvTranspose2d(input_dim, top, 4, bias=False), nn.BatchNorm2d(top), nn.ReLU()]  # (B, 4w, 4, 4)
        for i in range(doublings - 1):                         # (B, 2w, 8, 8) (B, w, 16, 16)
            layers.append(UpBlock(top // 2 ** i, top // 2 ** (i + 1)))
        layers += [nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Tanh()]  # (B, C, 32, 32)
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    """image (B, C, S, S) [and its labels (B,)] -> (score (B,), auxiliary output (B, K) or None).

    The score is a logit for the GAN loss, a critic value for the Wasserstein ones. With label_planes > 0
    (CGAN) the labels join the image as that many one-hot planes. `features` is the body up to the 4x4
    map (with hidden > 0: up to a fully connected layer of that many units after it); `auxiliary`, when
    auxiliary_outputs > 0, is a second head on that body (ACGAN's class logits,
    InfoGAN's Q).
    """

    def __init__(self, channels=1, image_size=32, width=64, batch_norm=True, downsample="stride", auxiliary_outputs=0,
                 label_planes=0, hidden=0):
        super().__init__()
        self.label_planes = label_planes
        halvings = num_halvings(image_size)
        # No BatchNorm on the first block: DCGAN found that normalising the input layer makes training unstable.
        blocks = [DownBlock(channels + label_planes, width, batch_norm=False, downsample=downsample)]  # (B, w, 16, 16)
        for i in range(halvings - 1):                                                    # (B, 2w, 8, 8) (B, 4w, 4, 4)
            blocks.append(DownBlock(width * 2 ** i, width * 2 ** (i + 1), batch_norm, downsample))
        top = width * 2 ** (halvings - 1)
        if hidden:  # InfoGAN's MNIST D: a fully connected layer after the convolutions, which Q shares
            blocks += [nn.Flatten(), nn.Linear(top * 4 * 4, hidden), *([nn.BatchNorm1d(hidden)] if batch_norm else []),
                       nn.LeakyReLU(0.2)]                                                  # (B, hidden)
        self.features = nn.Sequential(*blocks)
        self.score = nn.Linear(hidden, 1) if hidden else nn.Conv2d(top, 1, 4)             # (B, 1) or (B, 1, 1, 1)
        feature_size = hidden or top * 4 * 4
        self.auxiliary = nn.Sequential(nn.Flatten(), nn.Linear(feature_size, 128), nn.LeakyReLU(0.2),  # (B, 128)
                                       nn.Linear(128, auxiliary_outputs)) if auxiliary_outputs else None  # (B, K)

    def forward(self, images, labels=None, detach_auxiliary=False):
        """detach_auxiliary: the auxiliary head reads the body's features without sending its gradient back."""
        if self.label_planes:
            planes = F.one_hot(labels, self.label_planes).to(images.dtype)[:, :, None, None]  # (B, 10, 1, 1)
            images = torch.cat([images, planes.expand(-1, -1, *images.shape[2:])], 1)     # (B, C + 10, S, S)
        features = self.features(images)                                                   # (B, 4w, 4, 4)
        score = self.score(features).flatten()                                             # (B,)
        if detach_auxiliary:
            features = features.detach()
        return score, None if self.auxiliary is None else self.auxiliary(features)

    def critic_parameters(self):
        """The parameters the score depends on: the body and the score layer, not the auxiliary head."""
        return [*self.features.parameters(), *self.score.parameters()]


def init_dcgan_weights(module):
    """DCGAN's initialisation: conv weights ~ N(0, 0.02); BatchNorm scales ~ N(1, 0.02) and shifts 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class GAN(nn.Module):
    """DCGAN: G(z) and D(x), with the GAN, WGAN or WGAN-GP loss.

    The subclasses below change three things: what G takes beside z (generator_input, random_codes,
    prior_codes), what D is built with (code_dim, label_planes, auxiliary_outputs) and an extra loss term
    on D's auxiliary head (auxiliary_loss).
    """
    detach_auxiliary_in_d_step = False

    def __init__(self, image_shape=(1, 32, 32), latent_dim=100, width=64, loss="gan", downsample="stride",
                 clip=0.01, gp_weight=10.0, code_dim=0, label_planes=0, auxiliary_outputs=0, ema_decay=0.0,
                 generator_hidden=0, discriminator_hidden=0, noise="normal"):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")
        if noise not in NOISE_PRIORS:
            raise ValueError(f"noise must be one of {NOISE_PRIORS}, not {noise!r}")
        self.noise_prior = noise
        channels, size, _ = image_shape
        self.latent_dim, self.loss_type, self.clip, self.gp_weight = latent_dim, loss, clip, gp_weight
        self.generator = Generator(latent_dim + code_dim, channels, size, width, generator_hidden)
        self.discriminator = Discriminator(channels, size, width, batch_norm=loss != "wgan-gp", downsample=downsample,
                                           auxiliary_outputs=auxiliary_outputs, label_planes=label_planes,
                                           hidden=discriminator_hidden)
        self.apply(init_dcgan_weights)
        self.ema_decay = ema_decay
        self.averaged_generator = None
        if ema_decay:  # a copy of G whose weights follow G's moving average; never trained itself
            self.averaged_generator = copy.deepcopy(self.generator).requires_grad_(False)
            self.register_buffer("averaged_steps", torch.zeros(()))

    @property
    def device(self):
        return next(self.generator.parameters()).device

    def noise(self, count, generator=None):
        """z for `count` samples: N(0, I), or U(-1, 1) per dimension with noise="uniform" (InfoGAN's own
        code draws z so). From `generator` (a seeded CPU torch.Generator) when given, else the global stream."""
        device = self.device if generator is None else "cpu"
        if self.noise_prior == "uniform":
            z = torch.rand(count, self.latent_dim, generator=generator, device=device) * 2 - 1
        else:
            z = torch.randn(count, self.latent_dim, generator=generator, device=device)
        return z.to(self.device)

    def random_codes(self, count, labels=None, rows=slice(None)):
        """The codes the fake images of a training batch are made from, given the real batch's labels: codes
        drawn for `count` fakes, of which `rows` are kept (under torchrun, each process's part of one draw)."""
        return {}

    def prior_codes(self, count, labels=None, continuous=None):
        """Codes for `count` samples: the given ones, the rest drawn from their priors. DCGAN takes none."""
        return {}

    def generator_input(self, z, codes):
        return z                                                                           # (B, latent)

    def generate(self, z, codes, averaged=False):
        """G(z, c) in [-1, 1]: (B, C, S, S). averaged: from the moving average of G's weights, if kept."""
        generator = self.averaged_generator if averaged and self.averaged_generator is not None else self.generator
        return generator(self.generator_input(z, codes))

    @torch.no_grad()
    def sample(self, count=None, z=None, labels=None, continuous=None, averaged=True):
        """Images in [0, 1] from z (or `count` fresh noise vectors) and the given codes; codes not given are
        drawn from their priors, codes the model does not take are ignored. By default from the averaged
        G when there is one; averaged=False: from the live G that D trains against."""
        z = self.noise(count) if z is None else z
        return (self.generate(z, self.prior_codes(len(z), labels, continuous), averaged) + 1) / 2

    @torch.no_grad()
    def update_averaged_generator(self):
        """After each G step (nothing without ema_decay). With t updates so far and beta = min(ema_decay,
        (1 + t) / (10 + t)), which keeps the first steps from averaging in the random start:"""
        if self.averaged_generator is None:
            return
        self.averaged_steps += 1
        beta = ((1 + self.averaged_steps) / (10 + self.averaged_steps)).clamp(max=self.ema_decay)
        for averaged, live in zip(self.averaged_generator.state_dict().values(), self.generator.state_dict().values()):
            if averaged.is_floating_point():  # weights, and BatchNorm's running statistics alike
                # theta_avg <- beta theta_avg + (1 - beta) theta
                averaged.lerp_(live, 1 - beta)
            else:  # BatchNorm's count of batches
                averaged.copy_(live)

    def discriminator_loss(self, real, fake, real_labels=None, codes=None):
        """L_D on a real and a generated batch (pass fake detached, and the codes it was made from). Parts:
        D(x) and D(G(z)) as batch means (probabilities for "gan", critic values otherwise), the Wasserstein
        estimate and penalty for the critics, and the auxiliary head's parts."""
        codes = codes or {}
        real_score, real_auxiliary = self.discriminator(real, real_labels)
        fake_score, fake_auxiliary = self.discriminator(fake, codes.get("labels"),
                                                        detach_auxiliary=self.detach_auxiliary_in_d_step)
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
        auxiliary_total, auxiliary_parts = self.auxiliary_loss(fake_auxiliary, codes, real_auxiliary, real_labels)
        return {"total": total + auxiliary_total, **parts, **auxiliary_parts}

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
        fake_score, fake_auxiliary = self.discriminator(fake, codes.get("labels"))
        if self.loss_type == "gan":
            # L_G = -log sigma(D(G(z))), the non-saturating loss
            total = F.softplus(-fake_score).mean()
        else:
            # L_G = -f(G(z))
            total = -fake_score.mean()
        auxiliary_total, auxiliary_parts = self.auxiliary_loss(fake_auxiliary, codes)
        return {"total": total + auxiliary_total, **auxiliary_parts}

    def auxiliary_loss(self, fake_auxiliary, codes, real_auxiliary=None, real_labels=None):
        """The extra term of L_D (given the real batch too) or L_G, and its parts. DCGAN has none."""
        return 0.0, {}

    @torch.no_grad()
    def clip_critic_weights(self):
        """WGAN: w <- clip(w, -c, c) for every parameter the critic's score depends on, after each critic step.
        An auxiliary head (ACGAN's classifier, InfoGAN's Q) is left alone: the Lipschitz bound is on f only."""
        for parameter in self.discriminator.critic_parameters():
            parameter.clamp_(-self.clip, self.clip)


class CGAN(GAN):
    """Mirza & Osindero, "Conditional Generative Adversarial Nets", arXiv:1411.1784.

    G(z, y) takes the class y as one-hot columns beside z; D(x, y) sees it as num_classes one-hot planes
    stacked on the image, so it judges "a real image of class y":

        min_G max_D  E_{x,y}[log D(x, y)] + E_{z,y}[log(1 - D(G(z, y), y))]
    """

    def __init__(self, image_shape=(1, 32, 32), num_classes=10, **options):
        self.num_classes = num_classes
        super().__init__(image_shape, code_dim=num_classes, **{"label_planes": num_classes, **options})

    def random_codes(self, count, labels=None, rows=slice(None)):
        """The real batch's labels: the fake classes follow the data's (nothing is drawn)."""
        return {"labels": labels}

    def prior_codes(self, count, labels=None, continuous=None):
        """The given classes, or uniform ones."""
        return {"labels": torch.randint(self.num_classes, (count,), device=self.device) if labels is None else labels}

    def generator_input(self, z, codes):
        one_hot = F.one_hot(codes["labels"], self.num_classes).to(z.dtype)                 # (B, 10)
        return torch.cat([z, one_hot], 1)                                                   # (B, latent + 10)


class ACGAN(CGAN):
    """Odena et al., "Conditional Image Synthesis with Auxiliary Classifier GANs", arXiv:1610.09585.

    CGAN's generator G(z, y); D sees the image only, and a second head on its body predicts the class.
    Both players also minimise the class loss (CE: cross-entropy), weighted by class_weight:

        L_D += CE(class(x), y) + CE(class(G(z, y)), y)      L_G += CE(class(G(z, y)), y)
    """

    def __init__(self, image_shape=(1, 32, 32), num_classes=10, class_weight=1.0, **options):
        self.class_weight = class_weight
        # CGAN's generator; a D without the label planes, with a class head instead
        super().__init__(image_shape, num_classes, label_planes=0, auxiliary_outputs=num_classes, **options)

    def auxiliary_loss(self, fake_logits, codes, real_logits=None, real_labels=None):
        if real_logits is None:
            # L_G += CE(class(G(z, y)), y)
            return self.class_weight * F.cross_entropy(fake_logits, codes["labels"]), {}
        # L_D += CE(class(x), y) + CE(class(G(z, y)), y)
        class_loss = F.cross_entropy(real_logits, real_labels) + F.cross_entropy(fake_logits, codes["labels"])
        return self.class_weight * class_loss, {"class_loss": class_loss}


class InfoGAN(GAN):
    """Chen et al., "InfoGAN: Interpretable Representation Learning by Information Maximizing Generative
    Adversarial Nets", arXiv:1606.03657.

    G(z, c) with c = (c1 ~ Cat(num_classes), c2, c3 ~ U(-1, 1)) and no labels. A head Q on D's body
    predicts c back from G(z, c); maximising the variational bound

        L_I = E[log Q(c | G(z, c))] + H(c)  <=  I(c; G(z, c))

    keeps c readable from the image, so c1 tends to take the digit class. With Q a categorical for c1 and
    a unit-variance Gaussian with mean mu_i for each continuous c_i, both players minimise, weighted by
    lambda = information_weight, with gamma = continuous_weight on the continuous codes' part (the paper
    gives the continuous codes their own, typically smaller, lambda):

        L_D += lambda (CE(Q_1, c1) + gamma sum_i (c_i - mu_i)^2 / 2 + const)   and the same term in L_G.

    The paper's MNIST networks add a fully connected layer of 1024 units to G and to D's body
    (generator_hidden, discriminator_hidden), and its code draws z ~ U(-1, 1) (noise="uniform"); both are
    train.py's defaults for InfoGAN. Two departures from the paper, which together helped the smaller
    convolutional networks, can be switched on (docs/results.md measures both):
    - q_trains_body=False: in D's step, Q reads the body's features detached, so Q learns from them but
      does not shape them (in G's step the gradient runs through both). True is the paper's way: the
      information loss trains the body too.
    - category_scale > 1: c1 enters G as that many times a one-hot (1: the paper). A plain one-hot
      (norm 1) has little say beside z (norm ~ sqrt(62) ~ 8) in a convolutional first layer of G; 8
      makes G ignore z.
    """

    def __init__(self, image_shape=(1, 32, 32), num_classes=10, continuous_codes=2, information_weight=1.0,
                 continuous_weight=1.0, category_scale=1.0, q_trains_body=True, **options):
        self.num_classes, self.continuous_codes = num_classes, continuous_codes
        self.information_weight, self.continuous_weight = information_weight, continuous_weight
        self.category_scale = category_scale
        self.detach_auxiliary_in_d_step = not q_trains_body
        code_dim = num_classes + continuous_codes
        super().__init__(image_shape, code_dim=code_dim, auxiliary_outputs=code_dim, **options)

    def random_codes(self, count, labels=None, rows=slice(None)):
        """Fresh codes from the prior for every batch: InfoGAN never sees the labels."""
        return {name: code[rows] for name, code in self.prior_codes(count).items()}

    def prior_codes(self, count, labels=None, continuous=None):
        """c1 ~ Cat(num_classes) and c2, c3 ~ U(-1, 1), unless given."""
        if labels is None:
            labels = torch.randint(self.num_classes, (count,), device=self.device)
        if continuous is None:
            continuous = torch.rand(count, self.continuous_codes, device=self.device) * 2 - 1
        return {"labels": labels, "continuous": continuous}

    def generator_input(self, z, codes):
        category = self.category_scale * F.one_hot(codes["labels"], self.num_classes).to(z.dtype)  # (B, 10)
        return torch.cat([z, category, codes["continuous"]], 1)                            # (B, latent + 10 + 2)

    def auxiliary_loss(self, fake_q, codes, real_auxiliary=None, real_labels=None):
        categorical, gaussian = self.information_loss(fake_q, codes)
        # L_D (and L_G) += lambda (CE(Q_1, c1) + gamma sum_i (c_i - mu_i)^2 / 2 + const)
        total = self.information_weight * (categorical + self.continuous_weight * gaussian)
        if real_auxiliary is None:
            return total, {}
        # L_I = H(c) - the unweighted loss, with H(c) = log 10 + 2 log 2 for Cat(10) and two U(-1, 1): the bound on I(c; G(z, c))
        bound = math.log(self.num_classes) + self.continuous_codes * math.log(2) - (categorical + gaussian)
        return total, {"information_bound": bound}

    def information_loss(self, q_output, codes):
        """-E[log Q(c | G(z, c))] in nats per image, as its two parts (c1's, the continuous codes'): Q is a
        categorical over c1 (the first num_classes outputs) and a unit-variance Gaussian with mean mu_i over
        each continuous c_i (the rest)."""
        logits, means = q_output[:, :self.num_classes], q_output[:, self.num_classes:]
        # -log N(c_i; mu_i, 1) = (c_i - mu_i)^2 / 2 + log(2 pi) / 2
        gaussian = ((codes["continuous"] - means) ** 2 / 2 + math.log(2 * math.pi) / 2).sum(1)
        return F.cross_entropy(logits, codes["labels"]), gaussian.mean()

    @torch.no_grad()
    def encode_category(self, images):
        """The most likely c1 under Q for each image in [0, 1] (B,): the code its digit class should map to."""
        return self.discriminator(images * 2 - 1)[1][:, :self.num_classes].argmax(1)


MODELS = {"dcgan": GAN, "cgan": CGAN, "acgan": ACGAN, "infogan": InfoGAN}


def make_gan(model="dcgan", **options):
    """The GAN class named `model` (a key of MODELS), built with its own options."""
    return MODELS[model](**options)
