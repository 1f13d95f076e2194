"""How a GAN run is measured: FID in the feature space of a small classifier, the class histogram, the
requested-class accuracy of the conditional models, and InfoGAN's clustering of real digits by c1.

The Frechet distance (Heusel et al., arXiv:1706.08500) between two sets of features, each summarised by its
mean mu and covariance C:

    FID = ||mu_1 - mu_2||^2 + tr(C_1) + tr(C_2) - 2 tr((C_1^1/2 C_2 C_1^1/2)^1/2)

The usual FID uses ImageNet Inception features, which say little about 32x32 digits; here the features are
the penultimate layer of a small CNN trained on the dataset's own labels (once, then cached in the user's
cache folder, ~/.cache/generative-models/). The numbers only compare with each other, not
with published Inception FIDs.

The classifier trains on the training set less its last 10,000 images (common.data.split_training_set), which it
never sees. Those held-out images give the floor: n of them against the test set, for n samples, is the
distance that sampling n real images alone produces. (Training images the classifier had learnt would
also carry its train-versus-test shift, and read as a larger floor.) They are also the validation split
on which a run may choose anything (InfoGAN's clustering is watched there), so that the test set
decides nothing. The classifier's predictions on generated images give the class histogram, which shows
mode collapse. GAN/fid.py scores any family's samples with the same classifier.
"""
import math
import time

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.utils import save_image

from common import InputError, save_atomically
from common.data import DEFAULT_IMAGE_SIZE, Batches, cache_folder, load_dataset, split_training_set
from common.utils import append_csv
from GAN.model import CGAN, InfoGAN

VERSION = 2         # of the cached classifier; 1 was trained on the whole training set


class Classifier(nn.Module):
    """image (B, C, S, S) in [0, 1] -> class logits; `features` is the 128-D penultimate layer the FID uses."""

    def __init__(self, channels=1, image_size=32, num_classes=10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # (B, 32, S/2, S/2)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),         # (B, 64, S/4, S/4)
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),  # (B, 128, 4, 4)
            nn.Flatten(), nn.Linear(128 * 4 * 4, 128), nn.ReLU(),               # (B, 128)
        )
        self.head = nn.Linear(128, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))

    @torch.no_grad()
    def reset_parameters(self, generator):
        """PyTorch's default initialisation, drawn from `generator` instead of the global random stream."""
        for layer in self.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(layer.weight[0].numel())
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def classifier_path(dataset, root, image_size):
    """Where the classifier is cached: the data root's folder in the user's cache (common.data.cache_folder),
    never inside the data folder, where it could be read back as images of one more class."""
    return cache_folder(root) / f"classifier-{dataset}-{image_size}px.pt"


def load_classifier(dataset, root, image_size=None, device="cpu", epochs=5, batch_size=128):
    """The dataset's classifier, trained on its first call (seeded; the weights still differ slightly with
    the CPU's thread count and the device) and cached (classifier_path). Returns (classifier in eval mode,
    info) where info holds its test accuracy and how many training images it was fitted on and held out."""
    image_size = DEFAULT_IMAGE_SIZE[dataset] if image_size is None else image_size
    path = classifier_path(dataset, root, image_size)
    saved = None
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(saved, dict) or not {"model", "config", "info"} <= saved.keys():
                raise KeyError("model, config or info")
        except Exception as error:
            raise InputError(f"the cached classifier {path} cannot be read ({type(error).__name__}): delete it "
                             f"and it will be trained again") from None
        if saved.get("version") != VERSION:
            print(f"the cached classifier {path} was trained on the whole training set (an older version): "
                  f"training it again without the held-out images")
            saved = None
    if saved is None:
        # Training draws from generators of its own and touches no global random state, so a training run
        # draws the same noise whether the classifier was cached or had to be trained first.
        saved = train_classifier(dataset, root, image_size, device, epochs, batch_size)
        try:
            save_atomically(saved, path)
        except (OSError, RuntimeError) as error:
            print(f"warning: could not cache the classifier at {path} ({error}); it is trained again next time")
    with torch.device("meta"):  # no initial weights drawn: the saved ones replace them
        classifier = Classifier(**saved["config"])
    try:
        classifier.load_state_dict(saved["model"], assign=True)
    except (RuntimeError, KeyError) as error:
        raise InputError(f"the cached classifier {path} does not fit ({type(error).__name__}): delete it "
                         f"and it will be trained again") from None
    return classifier.to(device).eval(), saved["info"]


def train_classifier(dataset, root, image_size, device, epochs, batch_size):
    """Train the classifier on the training set less its held-out part; returns its weights, config and info."""
    train_images, train_labels = load_dataset(dataset, root, image_size, train=True)
    test_images, test_labels = load_dataset(dataset, root, image_size, train=False)
    if train_labels is None:
        raise InputError(f"FID needs a classifier, and the {dataset} images have no class labels to train one on")
    (fit_images, fit_labels), (held_out_images, _) = split_training_set(train_images, train_labels)
    config = dict(channels=train_images.shape[1], image_size=image_size, num_classes=int(train_labels.max()) + 1)
    print(f"training the {dataset} classifier for FID once ({epochs} epochs on {len(fit_images):,} images, "
          f"{len(held_out_images):,} held out; a few minutes on a CPU); it is cached in "
          f"{classifier_path(dataset, root, image_size)}", flush=True)
    with torch.device("meta"):  # built without drawing: reset_parameters draws the weights from its own generator
        classifier = Classifier(**config)
    classifier = classifier.to_empty(device="cpu")
    classifier.reset_parameters(torch.Generator().manual_seed(0))
    classifier.to(device)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=2e-3)
    batches = Batches(fit_images.to(device), fit_labels.to(device), min(batch_size, len(fit_images)), seed=0)
    # One cycle (lr up, then annealed to ~0): 99.1% test accuracy in 4 epochs on MNIST, against 98.6% at a flat 1e-3
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=epochs * len(batches))
    for epoch in range(1, epochs + 1):
        started, loss_sum = time.time(), 0.0
        for x, y in batches:
            loss = F.cross_entropy(classifier(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach()
        print(f"classifier epoch {epoch}/{epochs}: training loss {loss_sum.item() / len(batches):.4f} "
              f"({time.time() - started:.0f} s)", flush=True)
    classifier.eval()

    accuracy = (predict(classifier, test_images.float() / 255).cpu() == test_labels).double().mean().item()
    print(f"classifier test accuracy {accuracy:.4f}")
    return {"version": VERSION, "model": classifier.cpu().state_dict(), "config": config,
            "info": {"test_accuracy": accuracy, "fit_images": len(fit_images), "held_out_images": len(held_out_images)}}


def to_classifier_input(images, image_size):
    """Float images in [0, 1] at the classifier's size: 28x28 MNIST-style samples get the loader's 2-pixel pad."""
    images = images.float()
    if images.shape[-1] == image_size:
        return images
    if images.shape[-1] + 4 == image_size:
        return F.pad(images, (2, 2, 2, 2))
    return F.interpolate(images, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)


@torch.no_grad()
def features(classifier, images, batch_size=1000):
    """(N, 128) float64 penultimate features of images in [0, 1]."""
    device = next(classifier.parameters()).device
    return torch.cat([classifier.features(chunk.to(device)).double() for chunk in images.split(batch_size)])


@torch.no_grad()
def predict(classifier, images, batch_size=1000):
    device = next(classifier.parameters()).device
    return torch.cat([classifier(chunk.to(device)).argmax(1) for chunk in images.split(batch_size)])


def statistics(feature_rows):
    """Mean and covariance in float64 (float32 loses the small eigenvalues that the trace terms add up)."""
    mean = feature_rows.mean(0)
    centered = feature_rows - mean
    return mean, centered.T @ centered / (len(feature_rows) - 1)


def symmetric_sqrt(matrix):
    """A^1/2 of a symmetric positive semi-definite A through A = V diag(l) V^T; rounding's negative l become 0."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance(features_1, features_2):
    """FID between two (N, D) feature sets, or between two (mean, covariance) pairs."""
    mean_1, cov_1 = features_1 if isinstance(features_1, tuple) else statistics(features_1.double())
    mean_2, cov_2 = features_2 if isinstance(features_2, tuple) else statistics(features_2.double())
    root_1 = symmetric_sqrt(cov_1)
    # tr((C_1 C_2)^1/2) = tr((C_1^1/2 C_2 C_1^1/2)^1/2), and the inner matrix is symmetric, so eigh applies
    cross = symmetric_sqrt(root_1 @ cov_2 @ root_1).trace()
    # FID = ||mu_1 - mu_2||^2 + tr(C_1) + tr(C_2) - 2 tr((C_1^1/2 C_2 C_1^1/2)^1/2)
    return ((mean_1 - mean_2).square().sum() + cov_1.trace() + cov_2.trace() - 2 * cross).item()


class SampleScorer:
    """Scores generated images against one dataset's test set (or its validation split): FID, the floor for as many real images, the
    class histogram and, given the classes the images were asked for, how often the classifier names them."""

    def __init__(self, dataset, root, image_size=None, device="cpu"):
        self.classifier, self.info = load_classifier(dataset, root, image_size, device)
        self.image_size = DEFAULT_IMAGE_SIZE[dataset] if image_size is None else image_size
        test_images, _ = load_dataset(dataset, root, self.image_size, train=False)
        train_images, train_labels = load_dataset(dataset, root, self.image_size, train=True)
        held_out_images = split_training_set(train_images, train_labels)[1][0]
        # "test": the final figure's reference; "validation": the held-out training images, to choose settings on
        self.real_features = {"test": features(self.classifier, test_images.float() / 255),
                              "validation": features(self.classifier, held_out_images.float() / 255)}
        self.real_statistics = {name: statistics(rows) for name, rows in self.real_features.items()}

    def floor(self, count, against="test"):
        """FID of `count` real images (all of them, if fewer) from the other split, against this one (test:
        held-out training images; validation: test images), and how many it used: what sampling that many real
        images gives, the bar for `count` samples."""
        other = self.real_features["validation" if against == "test" else "test"]
        used = min(count, len(other))
        return frechet_distance(other[:used], self.real_statistics[against]), used

    @torch.no_grad()
    def score(self, images, labels=None, against="test"):
        """images: float (N, C, H, W) in [0, 1]; labels: the class each was asked for (conditional models);
        against: "test" or "validation", the real images compared with.
        Returns a dict: fid (to those images), floor and floor_images (self.floor(N)), shares (the fraction
        given each class) and, with labels, accuracy (how often the classifier names the requested class)
        and class_accuracy (a list, per class)."""
        image_features = features(self.classifier, to_classifier_input(images, self.image_size))
        result = {"fid": frechet_distance(statistics(image_features), self.real_statistics[against])}
        result["floor"], result["floor_images"] = self.floor(len(images), against)
        # the head on the same features: one pass of the body serves all three (float64 holds float32 exactly)
        predictions = self.classifier.head(image_features.float()).argmax(1).cpu()
        num_classes = self.classifier.head.out_features
        result["shares"] = (torch.bincount(predictions, minlength=num_classes) / len(predictions)).tolist()
        if labels is not None:
            labels = labels.cpu()
            correct = predictions == labels
            result["accuracy"] = correct.double().mean().item()
            result["class_accuracy"] = [correct[labels == c].double().mean().item() for c in range(num_classes)]
        return result


@torch.no_grad()
def measure(model, scorer, count, batch_size, seed, labelled_set=None, averaged=True):
    """FID, its floor and class shares of `count` samples from seeded noise (repeatable for one model), from
    the averaged G if there is one (averaged=False: the live G). Conditional models get balanced requested
    classes and their accuracy; InfoGAN gets its clustering accuracy on labelled_set, (uint8 images, labels)."""
    # Every input comes from this seeded generator, none from the global random stream that training draws its
    # noise from: how often quality is measured (--fid-every) must not change the run.
    generator = torch.Generator().manual_seed(seed)
    z = model.noise(count, generator)
    labels = continuous = None
    if isinstance(model, (CGAN, InfoGAN)):
        labels = (torch.arange(count) % model.num_classes).to(model.device)                  # balanced classes
    if isinstance(model, InfoGAN):
        continuous = (torch.rand(count, model.continuous_codes, generator=generator) * 2 - 1).to(model.device)
    images = torch.cat([model.sample(z=z[start:start + batch_size],
                                     labels=None if labels is None else labels[start:start + batch_size],
                                     continuous=None if continuous is None else continuous[start:start + batch_size],
                                     averaged=averaged)
                        for start in range(0, count, batch_size)])
    quality = scorer.score(images, labels if isinstance(model, CGAN) else None)  # CGAN and ACGAN: requested classes
    if isinstance(model, InfoGAN) and labelled_set is not None:
        quality["cluster_accuracy"], quality["digit_of_c1"], quality["c1_purity"] = \
            cluster_labelled_images(model, *labelled_set, batch_size)
    return quality


def watched_columns(model):
    """The log.csv columns `watch` fills: the 2,000-sample FID (and the live G's, beside the averaged one's),
    and what the model adds to it."""
    return ["fid_2k"] + (["fid_2k_live"] if model.averaged_generator is not None else []) + \
        (["accuracy_2k"] if isinstance(model, CGAN) else []) + (["cluster_accuracy_val"] if isinstance(model, InfoGAN) else [])


def watch(model, scorer, batch_size, seed, validation_set=None):
    """The figures log.csv follows during training, from 2,000 samples: FID, the conditional models'
    requested-class accuracy, InfoGAN's clustering accuracy on the validation split (never the test set)."""
    quality = measure(model, scorer, 2000, batch_size, seed, validation_set)
    row = {"fid_2k": quality["fid"]}
    if model.averaged_generator is not None:
        row["fid_2k_live"] = measure(model, scorer, 2000, batch_size, seed, averaged=False)["fid"]
    if isinstance(model, CGAN):
        row["accuracy_2k"] = quality["accuracy"]
    if isinstance(model, InfoGAN):
        row["cluster_accuracy_val"] = quality["cluster_accuracy"]
    return row


def final_report(model, scorer, count, batch_size, seed, test_set, epoch, out):
    """The end of a run: FID of `count` samples against the test set, its floor, the class shares, the
    requested-class accuracy (CGAN, ACGAN) or the test set's clustering by c1 (InfoGAN), all from the averaged G
    if there is one, and beside it the live G's FID; to out/fid.csv and the screen."""
    quality = measure(model, scorer, count, batch_size, seed, test_set)
    fid, floor, shares = quality["fid"], quality["floor"], quality["shares"]
    live = {}
    if model.averaged_generator is not None:
        live_fid = measure(model, scorer, count, batch_size, seed, averaged=False)["fid"]
        live = {"fid_live": f"{live_fid:.4f}", "fid_live_over_floor": f"{live_fid / floor:.2f}"}
    extra = {}
    if isinstance(model, CGAN):
        extra = {"accuracy": f"{quality['accuracy']:.4f}",
                 **{f"accuracy_{c}": f"{a:.4f}" for c, a in enumerate(quality["class_accuracy"])}}
    if "cluster_accuracy" in quality:
        extra = {"cluster_accuracy": f"{quality['cluster_accuracy']:.4f}",
                 "digit_of_c1": " ".join(map(str, quality["digit_of_c1"]))}
    append_csv(out / "fid.csv", {"epoch": epoch, "samples": count, "fid": f"{fid:.4f}", "floor": f"{floor:.4f}",
                                 "fid_over_floor": f"{fid / floor:.2f}", **live, **extra,
                                 **{f"class_{label}": f"{share:.4f}" for label, share in enumerate(shares)}})
    print(f"FID of {count} samples against the test set: {fid:.3f} (floor {floor:.3f}: {quality['floor_images']} "
          f"held-out real images; {fid / floor:.2f}x)" + (f", from the averaged G (the live G: {live['fid_live']}, "
                                                         f"{live['fid_live_over_floor']}x)" if live else "")
          + "; class shares: " + " ".join(f"{c}:{s:.3f}" for c, s in enumerate(shares)))
    if isinstance(model, CGAN):
        print(f"the classifier gives the requested class to {quality['accuracy']:.2%} of the samples; per class: "
              + " ".join(f"{c}:{a:.3f}" for c, a in enumerate(quality["class_accuracy"])))
    if "cluster_accuracy" in quality:
        print(f"c1 -> digit, best one-to-one map: {quality['cluster_accuracy']:.2%} of the test set; c1 = k "
              f"-> digit (share of the test images Q gives k that are that digit): "
              + " ".join(f"{k}->{d} ({p:.0%})" for k, (d, p) in enumerate(zip(quality["digit_of_c1"], quality["c1_purity"]))))


@torch.no_grad()
def category_codes(model, images, batch_size=1000):
    """InfoGAN: Q's most likely c1 for each uint8 image (int64, on the CPU)."""
    return torch.cat([model.encode_category(chunk.to(model.device).float() / 255).cpu() for chunk in images.split(batch_size)])


def cluster_labelled_images(model, images, labels, batch_size=1000):
    """InfoGAN: Q's c1 for each uint8 image, scored against the images' labels by best_assignment."""
    return best_assignment(category_codes(model, images, batch_size), labels.cpu(), model.num_classes)


def code_label_counts(codes, labels, num_classes):
    """counts[code, label]: how many images Q gives `code` that have `label`."""
    counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    return counts.index_put_((codes, labels), torch.ones_like(codes), accumulate=True)


def best_assignment(codes, labels, num_classes):
    """The best one-to-one map code -> label: a max-weight matching on the code/label count table, solved
    exactly by dynamic programming over the sets of labels already taken (2^10 states). Returns its accuracy,
    the label of each code (a list) and each code's purity (the share of its images that have that label)."""
    counts = code_label_counts(codes, labels, num_classes)
    # labels taken by codes 0..k-1 (a bit mask) -> (most images those codes can match, the labels they took)
    best = {0: (0, ())}
    for code in range(num_classes):
        extended = {}
        for taken, (matched, chosen) in best.items():
            for label in range(num_classes):
                if not taken >> label & 1:
                    key, value = taken | 1 << label, matched + counts[code, label].item()
                    if value > extended.get(key, (-1,))[0]:
                        extended[key] = (value, chosen + (label,))
        best = extended
    matched, label_of_code = best[(1 << num_classes) - 1]
    purity = [counts[code, label].item() / max(counts[code].sum().item(), 1) for code, label in enumerate(label_of_code)]
    return matched / len(labels), list(label_of_code), purity


@torch.no_grad()
def draw_code_sweeps(model, seed, out):
    """InfoGAN: one picture per continuous code; row r has c1 = r, columns sweep that code from -2 to 2,
    the other continuous code is 0 and z is one fixed vector for the whole picture."""
    device = model.device
    z = model.noise(1, torch.Generator().manual_seed(seed))
    values = torch.linspace(-2, 2, 10, device=device)
    for index in range(model.continuous_codes):
        continuous = torch.zeros(model.num_classes, 10, model.continuous_codes, device=device)
        continuous[:, :, index] = values                                                  # (10 rows, 10 columns, codes)
        labels = torch.arange(model.num_classes, device=device).repeat_interleave(10)
        images = model.sample(z=z.expand(len(labels), -1), labels=labels, continuous=continuous.flatten(0, 1))
        save_image(images, out / f"infogan_c{index + 2}.png", nrow=10)


