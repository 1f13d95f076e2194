"""Generative adversarial networks with DCGAN architectures, trained with one of three losses.

A generator G maps noise z ~ p(z) (N(0, I), or U(-1, 1) per dimension) to an image; a discriminator
(or critic) D scores images. They play

    GAN (Goodfellow et al., arXiv:1406.2661):   min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]

The networks are DCGAN's (Radford et al., "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks", arXiv:1511.06434): transposed convs with BatchNorm
and ReLU up to a Tanh in G, strided convs with LeakyReLU(0.2) in D, every weight drawn from
N(0, 0.02).

`loss` picks the objective. D(x) is a raw score (a logit for "gan") and sigma the logistic
function:

    gan      (non-saturating, as in the GAN paper's practical advice)
             L_D = -log sigma(D(x)) - log(1 - sigma(D(G(z))))
             L_G = -log sigma(D(G(z)))         instead of log(1 - sigma(D(G(z)))), which saturates
    wgan     (Arjovsky et al., "Wasserstein GAN", arXiv:1701.07875): D is a critic f kept
             K-Lipschitz by clipping each of its weights to [-c, c] after each step, and
             f(x) - f(G(z)) estimates W(p_data, p_G)
             L_D = f(G(z)) - f(x)                           L_G = -f(G(z))
    wgan-gp  (Gulrajani et al., "Improved Training of Wasserstein GANs", arXiv:1704.00028): a
             penalty on the critic's gradient at random interpolates x^ = e x + (1 - e) G(z),
             e ~ U[0, 1], replaces clipping
             L_D = f(G(z)) - f(x) + lambda (||grad f(x^)||_2 - 1)^2     L_G = -f(G(z))
             The penalty is per sample, so the critic has no BatchNorm (it would mix samples).

Each loss trains with its paper's optimizer and number of D steps per G step (PAPER_SETTINGS).

GAN is DCGAN: G(z), D(x). Three subclasses add a code c that G takes beside z, each with its
paper's equation in its docstring: CGAN (a class label, shown to D too), ACGAN (a class label that D
must recognise) and InfoGAN (codes without labels that D's head Q must read back). Each works with
each loss. A variant's settings (its networks, its prior of z, its learning rates) are attributes of
its class, and whatever it adds to training, to the pictures and to the measuring is a method.

All losses are means over the batch, in nats; each returns its total and its named parts.

Samples come from an exponential moving average of G's weights when ema_decay > 0 (Yazici et al.,
"The Unusual Effectiveness of Averaging in GAN Training", arXiv:1806.04498): G's weights circle
around an equilibrium rather than settle in it, and their average lies nearer to it than any one
step's. D trains against the live G; the average only changes what is sampled.
"""
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from common import InputError
from common.blocks import DownBlock, UpBlock, num_halvings

LOSSES = ("gan", "wgan", "wgan-gp")
NOISE_PRIORS = ("normal", "uniform")
PAPER_SETTINGS = {  # each loss's optimizer, D's learning rate and D steps per G step
    "gan": dict(optimizer="Adam", lr=2e-4, betas=(0.5, 0.999), n_critic=1),     # DCGAN's
    "wgan": dict(optimizer="RMSprop", lr=5e-5, n_critic=5),                    # WGAN's Algorithm 1
    "wgan-gp": dict(optimizer="Adam", lr=1e-4, betas=(0.0, 0.9), n_critic=5),  # WGAN-GP's
}


class Generator(nn.Module):
    """input (B, input_dim) -> image (B, C, S, S) in [-1, 1]: input is z, or z joined to a code.
    Shape comments are for 32x32 and width w.

    hidden > 0 puts a fully connected layer of that many units (BatchNorm, ReLU) before the
    convolutions, as InfoGAN's MNIST generator has: the code then chooses the 4x4 map through a
    hidden layer, not as one linear term added to z's.
    """

    def __init__(self, input_dim=100, channels=1, image_size=32, width=64, hidden=0):
        super().__init__()
        doublings = num_halvings(image_size)             # 4 -> S: 3 doublings at 32 px, 4 at 64 px
        top = width * 2 ** (doublings - 1)
        layers = []
        if hidden:
            layers = [nn.Linear(input_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU()]
            input_dim = hidden                                                     # (B, hidden)
        layers += [nn.Unflatten(1, (input_dim, 1, 1)),                            # (B, input, 1, 1)
                   nn.ConvTranspose2d(input_dim, top, 4, bias=False), nn.BatchNorm2d(top),
                   nn.ReLU()]                                                      # (B, 4w, 4, 4)
        for i in range(doublings - 1):                               # (B, 2w, 8, 8) (B, w, 16, 16)
            layers.append(UpBlock(top // 2 ** i, top // 2 ** (i + 1)))
        layers += [nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
                   nn.Tanh()]                                                      # (B, C, 32, 32)
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    """image (B, C, S, S) [and its labels (B,)] -> (score (B,), auxiliary output (B, K) or None).

    The score is a logit for the GAN loss, a critic value for the Wasserstein ones. With
    label_planes > 0 (CGAN) the labels join the image as that many one-hot planes. `features` is
    the body up to the 4x4 map (with hidden > 0: up to a fully connected layer of that many units
    after it); `auxiliary`, when auxiliary_outputs > 0, is a second head on that body (ACGAN's
    class logits, InfoGAN's Q).
    """

    def __init__(self, channels=1, image_size=32, width=64, batch_norm=True, downsample="stride",
                 auxiliary_outputs=0, label_planes=0, hidden=0):
        super().__init__()
        self.label_planes = label_planes
        halvings = num_halvings(image_size)
        # No BatchNorm on the first block: DCGAN found that normalising the input layer makes
        # training unstable.
        blocks = [DownBlock(channels + label_planes, width, batch_norm=False,
                            downsample=downsample)]                                # (B, w, 16, 16)
        for i in range(halvings - 1):                                 # (B, 2w, 8, 8) (B, 4w, 4, 4)
            blocks.append(DownBlock(width * 2 ** i, width * 2 ** (i + 1), batch_norm, downsample))
        top = width * 2 ** (halvings - 1)
        if hidden:  # InfoGAN's MNIST D: a fully connected layer after the convolutions, Q shares it
            blocks += [nn.Flatten(), nn.Linear(top * 4 * 4, hidden),
                       *([nn.BatchNorm1d(hidden)] if batch_norm else []),
                       nn.LeakyReLU(0.2)]                                          # (B, hidden)
        self.features = nn.Sequential(*blocks)
        self.score = nn.Linear(hidden, 1) if hidden else nn.Conv2d(top, 1, 4)  # (B, 1) (B, 1, 1, 1)
        self.auxiliary = None
        if auxiliary_outputs:
            self.auxiliary = nn.Sequential(nn.Flatten(), nn.Linear(hidden or top * 4 * 4, 128),
                                           nn.LeakyReLU(0.2),                      # (B, 128)
                                           nn.Linear(128, auxiliary_outputs))      # (B, K)

    def forward(self, images, labels=None):
        if self.label_planes:
            planes = F.one_hot(labels, self.label_planes).to(images.dtype)[:, :, None, None]
            planes = planes.expand(-1, -1, *images.shape[2:])                    # (B, 10, S, S)
            images = torch.cat([images, planes], 1)                               # (B, C+10, S, S)
        features = self.features(images)                         # (B, 4w, 4, 4) or (B, hidden)
        score = self.score(features).flatten()                                     # (B,)
        return score, None if self.auxiliary is None else self.auxiliary(features)

    def critic_parameters(self):
        """The parameters the score depends on: the body and the score layer, not the auxiliary
        head."""
        return [*self.features.parameters(), *self.score.parameters()]


def init_dcgan_weights(module):
    """DCGAN's initialisation: weights ~ N(0, 0.02); BatchNorm scales ~ N(1, 0.02), shifts 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class GAN(nn.Module):
    """DCGAN: G(z) and D(x), with the GAN, WGAN or WGAN-GP loss.

    The class attributes are the model's settings; an argument that is not None overrides them.
    model.config holds every argument, so make_gan(**model.config) builds the same model. The
    subclasses change what G takes beside z (generator_input, random_codes, prior_codes), what D
    is built with (code_dim, label_planes, auxiliary_outputs), an extra loss term on D's
    auxiliary head (auxiliary_loss), and what training pictures and measures.
    """
    name = "dcgan"
    latent_dim = 100          # size of z
    noise_prior = "normal"    # z ~ N(0, I)
    width = 32                # channels of the largest feature maps (DCGAN: 64, at 64x64 pixels)
    generator_hidden = 0      # units of a fully connected layer before G's convolutions (0: none)
    discriminator_hidden = 0  # units of a fully connected layer after D's convolutions (0: none)
    code_dim = label_planes = auxiliary_outputs = 0  # G's code beside z; D's extra planes and head
    category_name = None      # the name of the categorical code G takes, which a picture row fixes
    picture_columns = 8       # of the picture drawn every epoch
    watched_scores = {}       # log.csv column -> the figure of measure() it follows, per variant

    def __init__(self, image_shape=(1, 32, 32), num_classes=10, latent_dim=None, noise=None,
                 width=None, generator_hidden=None, discriminator_hidden=None, loss="gan",
                 downsample="stride", clip=0.01, gp_weight=10.0, ema_decay=0.0):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")
        for name, value in dict(latent_dim=latent_dim, noise_prior=noise, width=width,
                                generator_hidden=generator_hidden,
                                discriminator_hidden=discriminator_hidden).items():
            if value is not None:  # an argument given overrides the class's setting
                setattr(self, name, value)
        if self.noise_prior not in NOISE_PRIORS:
            raise ValueError(f"noise must be one of {NOISE_PRIORS}, not {self.noise_prior!r}")
        self.num_classes = num_classes  # of the data: what the conditional models' codes range over
        self.loss_type, self.clip, self.gp_weight = loss, clip, gp_weight
        channels, size, _ = image_shape
        self.generator = Generator(self.latent_dim + self.code_dim, channels, size, self.width,
                                   self.generator_hidden)
        self.discriminator = Discriminator(channels, size, self.width, batch_norm=loss != "wgan-gp",
                                           downsample=downsample,
                                           auxiliary_outputs=self.auxiliary_outputs,
                                           label_planes=self.label_planes,
                                           hidden=self.discriminator_hidden)
        self.apply(init_dcgan_weights)
        self.ema_decay = ema_decay
        self.averaged_generator = None
        if ema_decay:  # a copy of G whose weights follow G's moving average; never trained itself
            self.averaged_generator = copy.deepcopy(self.generator).requires_grad_(False)
            self.register_buffer("averaged_steps", torch.zeros(()))
        self.config = dict(model=self.name, image_shape=list(image_shape), num_classes=num_classes,
                           latent_dim=self.latent_dim, noise=self.noise_prior, width=self.width,
                           generator_hidden=self.generator_hidden,
                           discriminator_hidden=self.discriminator_hidden, loss=loss,
                           downsample=downsample, clip=clip, gp_weight=gp_weight,
                           ema_decay=ema_decay)

    @property
    def device(self):
        return next(self.generator.parameters()).device

    @property
    def smallest_batch(self):
        """The fewest images a training step can take: 2 with BatchNorm1d layers (the fully
        connected ones'), which normalise over the batch, else 1."""
        return 2 if any(isinstance(m, nn.BatchNorm1d) for m in self.modules()) else 1

    # ---- training: the optimizers, the codes, the losses ----

    @property
    def n_critic(self):
        """D steps per G step: the loss's paper's."""
        return PAPER_SETTINGS[self.loss_type]["n_critic"]

    def generator_lr(self, lr):
        """G's learning rate for D's lr: with the GAN loss, twice it (G a step ahead of D); with
        the critics, the same."""
        return 2 * lr if self.loss_type == "gan" else lr

    def optimizers(self, lr=None, g_lr=None, fused=False):
        """(D's, G's) optimizer, the loss's paper's (PAPER_SETTINGS), at D's learning rate lr
        (None: the paper's) and G's g_lr (None: generator_lr(lr))."""
        settings = PAPER_SETTINGS[self.loss_type]
        lr = settings["lr"] if lr is None else lr
        g_lr = self.generator_lr(lr) if g_lr is None else g_lr
        if settings["optimizer"] == "RMSprop":
            return (torch.optim.RMSprop(self.discriminator.parameters(), lr=lr),
                    torch.optim.RMSprop(self.generator.parameters(), lr=g_lr))
        adam = dict(betas=settings["betas"], fused=fused)
        return (torch.optim.Adam(self.discriminator.parameters(), lr=lr, **adam),
                torch.optim.Adam(self.generator.parameters(), lr=g_lr, **adam))

    def conditioning_labels(self, labels):
        """The data's labels that G and D are conditioned on: none for DCGAN."""
        return None

    def noise(self, count, generator=None):
        """z for `count` samples from the prior: N(0, I), or U(-1, 1) per dimension. From
        `generator` (a seeded CPU torch.Generator) when given, else the global stream."""
        device = self.device if generator is None else "cpu"
        if self.noise_prior == "uniform":
            z = torch.rand(count, self.latent_dim, generator=generator, device=device) * 2 - 1
        else:
            z = torch.randn(count, self.latent_dim, generator=generator, device=device)
        return z.to(self.device)

    def random_codes(self, count, labels=None, rows=slice(None)):
        """The codes the fake images of a training batch are made from, given the real batch's
        labels: codes drawn for `count` fakes, of which `rows` are kept (under torchrun, each
        process's part of one draw)."""
        return {}

    def prior_codes(self, count, labels=None, continuous=None, generator=None):
        """Codes for `count` samples: the given ones, the rest drawn from their priors (from
        `generator` when given, as noise draws). DCGAN takes none."""
        return {}

    def generator_input(self, z, codes):
        return z                                                                   # (B, latent)

    def generate(self, z, codes, averaged=False):
        """G(z, c) in [-1, 1]: (B, C, S, S). averaged: from the moving average of G's weights, if
        kept."""
        use_average = averaged and self.averaged_generator is not None
        generator = self.averaged_generator if use_average else self.generator
        return generator(self.generator_input(z, codes))

    @torch.no_grad()
    def sample(self, count=None, z=None, labels=None, continuous=None, averaged=True):
        """Images in [0, 1] from z (or `count` fresh noise vectors) and the given codes; codes not
        given are drawn from their priors, codes the model does not take are ignored. By default
        from the averaged G when there is one; averaged=False: from the live G that D trains
        against."""
        z = self.noise(count) if z is None else z
        return (self.generate(z, self.prior_codes(len(z), labels, continuous), averaged) + 1) / 2

    @torch.no_grad()
    def update_averaged_generator(self):
        """After each G step (nothing without ema_decay): theta_avg <- beta theta_avg + (1 - beta)
        theta, with t updates so far and beta = min(ema_decay, (1 + t) / (10 + t)), which keeps
        the first steps from averaging in the random start."""
        if self.averaged_generator is None:
            return
        self.averaged_steps += 1
        beta = ((1 + self.averaged_steps) / (10 + self.averaged_steps)).clamp(max=self.ema_decay)
        for averaged, live in zip(self.averaged_generator.state_dict().values(),
                                  self.generator.state_dict().values()):
            if averaged.is_floating_point():  # weights, and BatchNorm's running statistics alike
                # theta_avg <- beta theta_avg + (1 - beta) theta
                averaged.lerp_(live, 1 - beta)
            else:  # BatchNorm's count of batches
                averaged.copy_(live)

    def discriminator_loss(self, real, fake, real_labels=None, codes=None):
        """L_D on a real and a generated batch (pass fake detached, and the codes it was made
        from). Parts: D(x) and D(G(z)) as batch means (probabilities for "gan", critic values
        otherwise), the Wasserstein estimate and penalty for the critics, and the auxiliary
        head's parts."""
        codes = codes or {}
        real_score, real_auxiliary = self.discriminator(real, real_labels)
        fake_score, fake_auxiliary = self.discriminator(fake, codes.get("labels"))
        if self.loss_type == "gan":
            # L_D = -log sigma(D(x)) - log(1 - sigma(D(G(z)))),
            # with -log sigma(s) = softplus(-s) and -log(1 - sigma(s)) = softplus(s)
            total = F.softplus(-real_score).mean() + F.softplus(fake_score).mean()
            parts = {"d_real": torch.sigmoid(real_score).mean(),
                     "d_fake": torch.sigmoid(fake_score).mean()}
        else:
            # W(p_data, p_G) ~ E[f(x)] - E[f(G(z))]
            wasserstein = real_score.mean() - fake_score.mean()
            parts = {"d_real": real_score.mean(), "d_fake": fake_score.mean(),
                     "wasserstein": wasserstein}
            # L_D = f(G(z)) - f(x)
            total = -wasserstein
            if self.loss_type == "wgan-gp":
                penalty = self.gradient_penalty(real, fake, real_labels)
                # L_D = f(G(z)) - f(x) + lambda (||grad f(x^)||_2 - 1)^2
                total = total + self.gp_weight * penalty
                parts["gradient_penalty"] = penalty
        auxiliary_total, auxiliary_parts = self.auxiliary_loss(fake_auxiliary, codes,
                                                               real_auxiliary, real_labels)
        return {"total": total + auxiliary_total, **parts, **auxiliary_parts}

    def gradient_penalty(self, real, fake, labels=None):
        """E[(||grad_x^ f(x^)||_2 - 1)^2] at x^ = e x + (1 - e) G(z), one e ~ U[0, 1] per sample."""
        e = torch.rand(len(real), 1, 1, 1, device=real.device)
        between = (e * real + (1 - e) * fake).requires_grad_(True)
        # create_graph: the penalty is itself differentiated when L_D is minimised
        grad, = torch.autograd.grad(self.discriminator(between, labels)[0].sum(), between,
                                    create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    def generator_loss(self, fake, codes=None):
        """L_G on a generated batch that still carries the generator's graph, and the codes it was
        made from."""
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
        """The extra term of L_D (given the real batch too) or L_G, and its parts: none here."""
        return 0.0, {}

    @torch.no_grad()
    def clip_critic_weights(self):
        """WGAN: w <- clip(w, -c, c) for every parameter the critic's score depends on, after each
        critic step. An auxiliary head (ACGAN's classifier, InfoGAN's Q) is left alone: the
        Lipschitz bound is on f only."""
        for parameter in self.discriminator.critic_parameters():
            parameter.clamp_(-self.clip, self.clip)

    # ---- pictures and measures: what GAN/train.py, GAN/evaluate.py and GAN/sample.py ask ----

    def picture_codes(self, seed):
        """The inputs of the picture drawn every epoch, from `seed` alone: 64 fixed z."""
        return {"z": self.noise(64, torch.Generator().manual_seed(seed))}

    def extra_pictures(self, seed):
        """Pictures drawn once at the end of a run, {file name: images}: none for DCGAN."""
        return {}

    def category_values(self, values, count):
        """The categorical code of `count` samples: `values` repeated in turn (None: every value in
        turn), checked; None for a model without one."""
        if self.category_name is None:
            if values is not None:
                raise InputError(f"a {self.name} takes no class labels or categorical code; "
                                 f"cgan, acgan and infogan do")
            return None
        values = list(range(self.num_classes)) if values is None else values
        if not all(0 <= value < self.num_classes for value in values):
            raise InputError(f"the {self.category_name} of a {self.name} lie in "
                             f"0..{self.num_classes - 1}, not {values}")
        return torch.tensor(values).repeat(math.ceil(count / len(values)))[:count]

    def requested_classes(self, codes):
        """The class each sample made from `codes` was asked for, for the classifier to name: None
        for a model not conditioned on classes."""
        return None

    def score_codes(self, images, labels, batch_size=1000):
        """What the model measures on labelled real images (uint8) beside the FID: nothing."""
        return {}

    def report(self, quality):
        """The model's own figures in measure()'s `quality`: (fid.csv's columns, printed lines)."""
        return {}, []

    def cluster(self, images, labels, batch_size=1000):
        """How the model's own categorical code sorts labelled real images: InfoGAN's alone."""
        raise InputError(f"a {self.name} learns no categorical code without labels to sort "
                         f"images by; an infogan does")


def category_grid(model, seed, columns=10):
    """The z and categorical code of a picture with one row per value of the code, and in column k
    the k-th of `columns` fixed z: (rows * columns, latent) and (rows * columns,)."""
    z = model.noise(columns, torch.Generator().manual_seed(seed))
    values = torch.arange(model.num_classes, device=model.device).repeat_interleave(columns)
    return z.repeat(model.num_classes, 1), values


class CGAN(GAN):
    """Mirza & Osindero, "Conditional Generative Adversarial Nets", arXiv:1411.1784.

    G(z, y) takes the class y as one-hot columns beside z; D(x, y) sees it as num_classes one-hot
    planes stacked on the image, so it judges "a real image of class y":

        min_G max_D  E_{x,y}[log D(x, y)] + E_{z,y}[log(1 - D(G(z, y), y))]
    """
    name = "cgan"
    code_dim = label_planes = property(lambda self: self.num_classes)
    category_name = "labels"
    picture_columns = 10  # one row per class
    watched_scores = {"accuracy_2k": "accuracy"}

    def generator_lr(self, lr):
        """G's learning rate: D's."""
        return lr

    def conditioning_labels(self, labels):
        if labels is None:
            raise InputError(f"a {self.name} is conditioned on class labels, and these images "
                             f"have none")
        return labels

    def random_codes(self, count, labels=None, rows=slice(None)):
        """The real batch's labels: the fake classes follow the data's (nothing is drawn)."""
        return {"labels": labels}

    def prior_codes(self, count, labels=None, continuous=None, generator=None):
        """The given classes, or uniform ones."""
        if labels is None:
            device = self.device if generator is None else "cpu"
            labels = torch.randint(self.num_classes, (count,), generator=generator, device=device)
        return {"labels": labels.to(self.device)}

    def generator_input(self, z, codes):
        one_hot = F.one_hot(codes["labels"], self.num_classes).to(z.dtype)        # (B, 10)
        return torch.cat([z, one_hot], 1)                                          # (B, latent+10)

    def picture_codes(self, seed):
        """A num_classes x 10 grid: row r asks for class r, column k has the k-th of 10 fixed z."""
        z, labels = category_grid(self, seed)
        return {"z": z, "labels": labels}

    def requested_classes(self, codes):
        return codes["labels"]

    def report(self, quality):
        per_class = quality["class_accuracy"]
        columns = {"accuracy": f"{quality['accuracy']:.4f}",
                   **{f"accuracy_{c}": f"{a:.4f}" for c, a in enumerate(per_class)}}
        return columns, [f"the classifier gives the requested class to {quality['accuracy']:.2%} "
                         f"of the samples; per class: "
                         + " ".join(f"{c}:{a:.3f}" for c, a in enumerate(per_class))]


class ACGAN(CGAN):
    """Odena et al., "Conditional Image Synthesis with Auxiliary Classifier GANs", arXiv:1610.09585.

    CGAN's generator G(z, y); D sees the image only, and a second head on its body predicts the
    class. Both players also minimise the class loss (CE: cross-entropy), weighted by class_weight:

        L_D += CE(class(x), y) + CE(class(G(z, y)), y)      L_G += CE(class(G(z, y)), y)
    """
    name = "acgan"
    label_planes = 0  # CGAN's generator; a D without the label planes, with a class head instead
    auxiliary_outputs = property(lambda self: self.num_classes)

    def __init__(self, image_shape=(1, 32, 32), num_classes=10, class_weight=1.0, **options):
        self.class_weight = class_weight
        super().__init__(image_shape, num_classes, **options)
        self.config["class_weight"] = class_weight

    def auxiliary_loss(self, fake_logits, codes, real_logits=None, real_labels=None):
        if real_logits is None:
            # L_G += CE(class(G(z, y)), y)
            return self.class_weight * F.cross_entropy(fake_logits, codes["labels"]), {}
        # L_D += CE(class(x), y) + CE(class(G(z, y)), y)
        class_loss = (F.cross_entropy(real_logits, real_labels)
                      + F.cross_entropy(fake_logits, codes["labels"]))
        return self.class_weight * class_loss, {"class_loss": class_loss}


class InfoGAN(GAN):
    """Chen et al., "InfoGAN: Interpretable Representation Learning by Information Maximizing
    Generative Adversarial Nets", arXiv:1606.03657.

    G(z, c) with c = (c1 ~ Cat(num_classes), c2, c3 ~ U(-1, 1)) and no labels. A head Q on D's body
    predicts c back from G(z, c); maximising the variational bound

        L_I = E[log Q(c | G(z, c))] + H(c)  <=  I(c; G(z, c))

    keeps c readable from the image, so c1 tends to take the digit class. With Q a categorical for
    c1 and a unit-variance Gaussian with mean mu_i for each continuous c_i, both players minimise,
    weighted by lambda = information_weight, with gamma = continuous_weight on the continuous
    codes' part (the paper gives the continuous codes their own, typically smaller, lambda):

        L_D += lambda (CE(Q_1, c1) + gamma sum_i (c_i - mu_i)^2 / 2 + const)  and the same in L_G.

    Its settings are the paper's for MNIST: 62 noise dimensions, a fully connected layer of 1024
    units in G and in D's body (Table 1), D's learning rate 2e-4 and G's 1e-3; z ~ U(-1, 1), as
    its authors' code draws it.
    """
    name = "infogan"
    latent_dim = 62
    noise_prior = "uniform"   # z ~ U(-1, 1)
    generator_hidden = discriminator_hidden = 1024
    code_dim = auxiliary_outputs = property(lambda self: self.num_classes + self.continuous_codes)
    category_name = "c1"
    picture_columns = 10  # one row per value of c1
    watched_scores = {"cluster_accuracy_val": "cluster_accuracy"}  # on the validation split

    def __init__(self, image_shape=(1, 32, 32), num_classes=10, continuous_codes=2,
                 information_weight=1.0, continuous_weight=1.0, **options):
        self.continuous_codes = continuous_codes
        self.information_weight, self.continuous_weight = information_weight, continuous_weight
        super().__init__(image_shape, num_classes, **options)
        self.config |= dict(continuous_codes=continuous_codes,
                            information_weight=information_weight,
                            continuous_weight=continuous_weight)

    def generator_lr(self, lr):
        """G's learning rate: the paper's 1e-3 (against D's 2e-4) with the GAN loss; D's with the
        critics."""
        return 1e-3 if self.loss_type == "gan" else lr

    def random_codes(self, count, labels=None, rows=slice(None)):
        """Fresh codes from the prior for every batch: InfoGAN never sees the labels."""
        return {name: code[rows] for name, code in self.prior_codes(count).items()}

    def prior_codes(self, count, labels=None, continuous=None, generator=None):
        """c1 ~ Cat(num_classes) and c2, c3 ~ U(-1, 1), unless given."""
        device = self.device if generator is None else "cpu"
        if labels is None:
            labels = torch.randint(self.num_classes, (count,), generator=generator, device=device)
        if continuous is None:
            continuous = torch.rand(count, self.continuous_codes, generator=generator,
                                    device=device) * 2 - 1
        return {"labels": labels.to(self.device), "continuous": continuous.to(self.device)}

    def generator_input(self, z, codes):
        category = F.one_hot(codes["labels"], self.num_classes).to(z.dtype)        # (B, 10)
        return torch.cat([z, category, codes["continuous"]], 1)                    # (B, latent+12)

    def auxiliary_loss(self, fake_q, codes, real_auxiliary=None, real_labels=None):
        categorical, gaussian = self.information_loss(fake_q, codes)
        # L_D (and L_G) += lambda (CE(Q_1, c1) + gamma sum_i (c_i - mu_i)^2 / 2 + const)
        total = self.information_weight * (categorical + self.continuous_weight * gaussian)
        if real_auxiliary is None:
            return total, {}
        # L_I = H(c) - the unweighted loss: the bound on I(c; G(z, c)),
        # with H(c) = log 10 + 2 log 2 for Cat(10) and two U(-1, 1)
        entropy = math.log(self.num_classes) + self.continuous_codes * math.log(2)
        return total, {"information_bound": entropy - (categorical + gaussian)}

    def information_loss(self, q_output, codes):
        """-E[log Q(c | G(z, c))] in nats per image, as its two parts (c1's, the continuous
        codes'): Q is a categorical over c1 (the first num_classes outputs) and a unit-variance
        Gaussian with mean mu_i over each continuous c_i (the rest)."""
        logits, means = q_output[:, :self.num_classes], q_output[:, self.num_classes:]
        # -log N(c_i; mu_i, 1) = (c_i - mu_i)^2 / 2 + log(2 pi) / 2
        gaussian = ((codes["continuous"] - means) ** 2 / 2 + math.log(2 * math.pi) / 2).sum(1)
        return F.cross_entropy(logits, codes["labels"]), gaussian.mean()

    @torch.no_grad()
    def encode_category(self, images):
        """The most likely c1 under Q for each image in [0, 1] (B,): the code its class should
        map to."""
        return self.discriminator(images * 2 - 1)[1][:, :self.num_classes].argmax(1)

    def picture_codes(self, seed):
        """A num_classes x 10 grid: row r has c1 = r, column k the k-th of 10 fixed z; c2 = c3 = 0.
        """
        z, labels = category_grid(self, seed)
        return {"z": z, "labels": labels,
                "continuous": torch.zeros(len(z), self.continuous_codes, device=self.device)}

    @torch.no_grad()
    def extra_pictures(self, seed):
        """One picture per continuous code: row r has c1 = r, the columns sweep that code from -2
        to 2, the other continuous code is 0 and z is one fixed vector throughout."""
        z = self.noise(1, torch.Generator().manual_seed(seed))
        values = torch.linspace(-2, 2, 10, device=self.device)
        labels = torch.arange(self.num_classes, device=self.device).repeat_interleave(10)
        pictures = {}
        for index in range(self.continuous_codes):
            continuous = torch.zeros(self.num_classes, 10, self.continuous_codes,
                                     device=self.device)                  # (rows, columns, codes)
            continuous[:, :, index] = values
            pictures[f"infogan_c{index + 2}.png"] = self.sample(
                z=z.expand(len(labels), -1), labels=labels, continuous=continuous.flatten(0, 1))
        return pictures

    @torch.no_grad()
    def cluster(self, images, labels, batch_size=1000):
        """How Q's c1 sorts labelled real images (uint8): counts[c1, label], how many images of
        each label Q gives each c1 (on the CPU), and the best one-to-one map c1 -> label."""
        codes = torch.cat([self.encode_category(chunk.to(self.device).float() / 255).cpu()
                           for chunk in images.split(batch_size)])
        counts = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        counts.index_put_((codes, labels.cpu()), torch.ones_like(codes), accumulate=True)
        return counts, best_assignment(counts)

    def score_codes(self, images, labels, batch_size=1000):
        """The clustering accuracy: the share of labelled real images whose label is the one their
        c1 maps to (cluster); with each c1's label (digit_of_c1) and purity, the share of the
        images Q gives it that have that label."""
        counts, digit_of_c1 = self.cluster(images, labels, batch_size)
        matched = [counts[code, label].item() for code, label in enumerate(digit_of_c1)]
        purity = [hits / max(counts[code].sum().item(), 1) for code, hits in enumerate(matched)]
        return {"cluster_accuracy": sum(matched) / len(labels), "digit_of_c1": digit_of_c1,
                "c1_purity": purity}

    def report(self, quality):
        columns = {"cluster_accuracy": f"{quality['cluster_accuracy']:.4f}",
                   "digit_of_c1": " ".join(map(str, quality["digit_of_c1"]))}
        pairs = zip(quality["digit_of_c1"], quality["c1_purity"])
        return columns, [f"c1 -> digit, best one-to-one map: {quality['cluster_accuracy']:.2%} of "
                         f"the test set; c1 = k -> digit (share of the test images Q gives k that "
                         f"are that digit): "
                         + " ".join(f"{k}->{d} ({p:.0%})" for k, (d, p) in enumerate(pairs))]


def best_assignment(counts):
    """The one-to-one map code -> label that matches the most images, from counts[code, label]
    (K x K): a max-weight matching, solved exactly by dynamic programming over the sets of labels
    already taken (2^K states). Returns the label of each code (a list)."""
    num_classes, counts = len(counts), counts.tolist()
    # labels taken by codes 0..k-1 (a bit mask) -> (most images those codes match, labels taken)
    best = {0: (0, ())}
    for code in range(num_classes):
        extended = {}
        for taken, (matched, chosen) in best.items():
            for label in range(num_classes):
                if not taken >> label & 1:
                    key, value = taken | 1 << label, matched + counts[code][label]
                    if value > extended.get(key, (-1,))[0]:
                        extended[key] = (value, chosen + (label,))
        best = extended
    return list(best[(1 << num_classes) - 1][1])


MODELS = {model.name: model for model in (GAN, CGAN, ACGAN, InfoGAN)}


def make_gan(model="dcgan", **options):
    """The GAN class named `model` (a key of MODELS), built with its own options."""
    return MODELS[model](**options)
