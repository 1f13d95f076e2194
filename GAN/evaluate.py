"""How a GAN run is measured: FID in the feature space of a small classifier, the class histogram,
and what each variant adds to it (GAN/model.py: the conditional models' requested-class accuracy,
InfoGAN's clustering of real digits by c1).

The Frechet distance (Heusel et al., arXiv:1706.08500) between two sets of features, each summarised
by its mean mu and covariance C:

    FID = ||mu_1 - mu_2||^2 + tr(C_1) + tr(C_2) - 2 tr((C_1^1/2 C_2 C_1^1/2)^1/2)

The usual FID uses ImageNet Inception features, which say little about 32x32 digits; here the
features are the penultimate layer of a small CNN trained on the dataset's own labels (once, then
cached in the user's cache folder, ~/.cache/generative-models/). The numbers only compare with each
other, not with published Inception FIDs.

The classifier trains on the training set less its last 10,000 images
(common.data.split_training_set), which it never sees. Those held-out images give the floor: n of
them against the test set, for n samples, is the distance that sampling n real images alone
produces. (Training images the classifier had learnt would also carry its train-versus-test shift,
and read as a larger floor.) They are also the validation split on which a run may choose anything
(InfoGAN's clustering is watched there), so that the test set decides nothing. The classifier's
predictions on generated images give the class histogram, which shows mode collapse. GAN/fid.py
scores any family's samples with the same classifier.
"""
import hashlib
import inspect
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from common import InputError
from common.data import Batches, cache_folder, split_training_set
from common.files import WriteError, save_tensors, write_csv
from common.pictures import save_curves


class Classifier(nn.Module):
    """image (B, C, S, S) in [0, 1] -> class logits; `features` is the 128-D penultimate layer the
    FID uses."""

    def __init__(self, channels=1, image_size=32, num_classes=10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, S/2, S/2)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),        # (B, 64, S/4, S/4)
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),  # (B, 128, 4, 4)
            nn.Flatten(), nn.Linear(128 * 4 * 4, 128), nn.ReLU(),                  # (B, 128)
        )
        self.head = nn.Linear(128, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))

    @torch.no_grad()
    def reset_parameters(self, generator):
        """PyTorch's default initialisation, drawn from `generator` instead of the global stream."""
        for layer in self.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(layer.weight[0].numel())
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def classifier_path(dataset, root, image_size):
    """Where the classifier is cached: the data root's folder in the user's cache
    (common.data.cache_folder), never inside the data folder, where it could be read back as
    images of one more class."""
    return cache_folder(root) / f"classifier-{dataset}-{image_size}px.pt"


def fingerprint(tensors, settings):
    """A hash of everything a classifier is trained from: the tensors' shapes and bytes, and the
    settings (architecture and training)."""
    digest = hashlib.blake2b(repr(settings).encode(), digest_size=16)
    for tensor in tensors:
        digest.update(repr((tuple(tensor.shape), tensor.dtype)).encode())
        digest.update(tensor.contiguous().numpy())
    return digest.hexdigest()


def load_classifier(dataset, root, train_set, test_set, device="cpu", epochs=5, batch_size=128):
    """The classifier of the dataset whose (images, labels) splits are given: trained on its first
    call (seeded; the weights still differ slightly with the CPU's thread count and the device)
    and cached (classifier_path) with the fingerprint of what it was trained from, so other data
    or settings train it again. Returns (classifier in eval mode, info) where info holds its test
    accuracy and how many training images it was fitted on and held out."""
    if train_set[1] is None:
        raise InputError(f"FID needs a classifier, and the {dataset} images have no class labels "
                         f"to train one on")
    image_size = train_set[0].shape[-1]
    config = dict(channels=train_set[0].shape[1], image_size=image_size,
                  num_classes=int(train_set[1].max()) + 1)
    with torch.device("meta"):  # built without drawing: the weights come later
        classifier = Classifier(**config)
    # what it is trained from: the data, the network, and the code that splits and trains
    recipe = [inspect.getsource(f) for f in (split_training_set, train_classifier)]
    trained_from = fingerprint([*train_set, *test_set], (repr(classifier), epochs, batch_size,
                                                         *recipe))
    path = classifier_path(dataset, root, image_size)
    saved = read_cached_classifier(path)
    if saved is not None and saved.get("trained_from") != trained_from:
        print(f"the cached classifier {path} was trained from other data or settings: training "
              f"it again")
        saved = None
    if saved is None:
        saved = train_classifier(classifier, train_set, test_set, device, epochs, batch_size, path)
        saved["trained_from"] = trained_from
        try:
            save_tensors(saved, path)
        except WriteError as error:
            print(f"warning: could not cache the classifier ({error}); it is trained again next "
                  f"time")
    try:
        classifier.load_state_dict(saved["model"], assign=True)
    except (RuntimeError, KeyError) as error:
        raise InputError(f"the cached classifier {path} does not fit ({type(error).__name__}): "
                         f"delete it and it will be trained again") from None
    return classifier.to(device).eval(), saved["info"]


def read_cached_classifier(path):
    """The cached classifier's dict, or None where there is none."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict) or not {"model", "info"} <= saved.keys():
            raise KeyError("model or info")
    except Exception as error:
        raise InputError(f"the cached classifier {path} cannot be read ({type(error).__name__}): "
                         f"delete it and it will be trained again") from None
    return saved


def train_classifier(classifier, train_set, test_set, device, epochs, batch_size, path):
    """Train the (meta) classifier on the training set less its held-out part; returns its
    weights and info."""
    (fit_images, fit_labels), (held_out_images, _) = split_training_set(*train_set)
    print(f"training the classifier for FID once ({epochs} epochs on {len(fit_images):,} images, "
          f"{len(held_out_images):,} held out; a few minutes on a CPU); it is cached in {path}",
          flush=True)
    classifier = classifier.to_empty(device="cpu")
    # Its own generators, no global random state: a training run draws the same noise whether
    # the classifier was cached or had to be trained first.
    classifier.reset_parameters(torch.Generator().manual_seed(0))
    classifier.to(device)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=2e-3)
    batches = Batches(fit_images.to(device), fit_labels.to(device),
                      min(batch_size, len(fit_images)), seed=0)
    # One cycle: the learning rate rises, then anneals to about 0
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3,
                                                   total_steps=epochs * len(batches))
    for epoch in range(1, epochs + 1):
        started, loss_sum = time.time(), 0.0
        for x, y in batches:
            loss = F.cross_entropy(classifier(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach()
        print(f"classifier epoch {epoch}/{epochs}: training loss "
              f"{loss_sum.item() / len(batches):.4f} ({time.time() - started:.0f} s)", flush=True)
    classifier.eval()
    test_images, test_labels = test_set
    predicted = predict(classifier, test_images.float() / 255).cpu()
    accuracy = (predicted == test_labels).double().mean().item()
    print(f"classifier test accuracy {accuracy:.4f}")
    return {"model": classifier.cpu().state_dict(),
            "info": {"test_accuracy": accuracy, "fit_images": len(fit_images),
                     "held_out_images": len(held_out_images)}}


def to_classifier_input(images, image_size):
    """Float images in [0, 1] at the classifier's size: 28x28 MNIST-style samples get the loader's
    2-pixel pad."""
    images = images.float()
    if images.shape[-1] == image_size:
        return images
    if images.shape[-1] + 4 == image_size:
        return F.pad(images, (2, 2, 2, 2))
    return F.interpolate(images, size=(image_size, image_size), mode="bilinear", antialias=True,
                         align_corners=False)


@torch.no_grad()
def features(classifier, images, batch_size=1000):
    """(N, 128) float64 penultimate features of images in [0, 1]."""
    device = next(classifier.parameters()).device
    return torch.cat([classifier.features(chunk.to(device)).double()
                      for chunk in images.split(batch_size)])


@torch.no_grad()
def predict(classifier, images, batch_size=1000):
    device = next(classifier.parameters()).device
    return torch.cat([classifier(chunk.to(device)).argmax(1) for chunk in images.split(batch_size)])


def statistics(feature_rows):
    """Mean and covariance in float64 (float32 loses the small eigenvalues that the trace terms add
    up)."""
    mean = feature_rows.mean(0)
    centered = feature_rows - mean
    return mean, centered.T @ centered / (len(feature_rows) - 1)


def symmetric_sqrt(matrix):
    """A^1/2 of a symmetric positive semi-definite A through A = V diag(l) V^T; rounding's negative
    l become 0."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance(features_1, features_2):
    """FID between two (N, D) feature sets, or between two (mean, covariance) pairs."""
    mean_1, cov_1 = features_1 if isinstance(features_1, tuple) else statistics(features_1.double())
    mean_2, cov_2 = features_2 if isinstance(features_2, tuple) else statistics(features_2.double())
    root_1 = symmetric_sqrt(cov_1)
    # tr((C_1 C_2)^1/2) = tr((C_1^1/2 C_2 C_1^1/2)^1/2), whose inner matrix is symmetric (eigh)
    cross = symmetric_sqrt(root_1 @ cov_2 @ root_1).trace()
    # FID = ||mu_1 - mu_2||^2 + tr(C_1) + tr(C_2) - 2 tr((C_1^1/2 C_2 C_1^1/2)^1/2)
    return ((mean_1 - mean_2).square().sum() + cov_1.trace() + cov_2.trace() - 2 * cross).item()


class SampleScorer:
    """Scores generated images against one dataset's test set (or its validation split): FID, the
    floor for as many real images, the class histogram and, given the classes the images were
    asked for, how often the classifier names them. train_set and test_set: the dataset's
    (uint8 images, labels), as common.data.load_dataset returns them."""

    def __init__(self, dataset, root, train_set, test_set, device="cpu"):
        held_out_images = split_training_set(*train_set)[1][0]
        if min(len(test_set[0]), len(held_out_images)) < 2:  # a covariance needs two
            raise InputError(f"the {dataset} data has {len(test_set[0])} test and "
                             f"{len(held_out_images)} held-out training image(s): an FID needs 2 "
                             f"or more of each (--fid-every 0 --fid-samples 0 trains without it)")
        self.classifier, self.info = load_classifier(dataset, root, train_set, test_set, device)
        self.image_size = train_set[0].shape[-1]
        self.channels = train_set[0].shape[1]
        # "test": the final figure's reference; "validation": the held-out training images, to
        # choose settings on
        self.real_features = {name: features(self.classifier, images.float() / 255) for name, images
                              in [("test", test_set[0]), ("validation", held_out_images)]}
        self.real_statistics = {name: statistics(rows) for name, rows in self.real_features.items()}

    def floor(self, count, against="test"):
        """FID of `count` real images (all of them, if fewer) from the other split, against this
        one (test: held-out training images; validation: test images), and how many it used: what
        sampling that many real images gives, the bar for `count` samples."""
        other = self.real_features["validation" if against == "test" else "test"]
        used = min(count, len(other))
        return frechet_distance(other[:used], self.real_statistics[against]), used

    @torch.no_grad()
    def score(self, images, labels=None, against="test"):
        """images: float (N, C, H, W) in [0, 1]; labels: the class each was asked for
        (conditional models); against: "test" or "validation", the real images compared with.
        Returns a dict: fid (to those images), floor and floor_images (self.floor(N)), shares (the
        fraction given each class) and, with labels, accuracy (how often the classifier names the
        requested class) and class_accuracy (a list, per class)."""
        image_features = features(self.classifier, to_classifier_input(images, self.image_size))
        fid = frechet_distance(statistics(image_features), self.real_statistics[against])
        result = {"fid": fid}
        result["floor"], result["floor_images"] = self.floor(len(images), against)
        # the head on the same features: one pass of the body serves all three (float64 holds
        # float32 exactly)
        predictions = self.classifier.head(image_features.float()).argmax(1).cpu()
        num_classes = self.classifier.head.out_features
        result["shares"] = (torch.bincount(predictions, minlength=num_classes)
                            / len(predictions)).tolist()
        if labels is not None:
            labels = labels.cpu()
            correct = predictions == labels
            result["accuracy"] = correct.double().mean().item()
            result["class_accuracy"] = [correct[labels == c].double().mean().item()
                                        for c in range(num_classes)]
        return result


@torch.no_grad()
def measure(model, scorer, count, batch_size, seed, labelled_set):
    """FID, its floor and the class shares of `count` samples of the G that samples (the averaged
    G, if there is one), from seeded noise and codes: the same inputs for every call with one
    seed. With the model's own figures: how often the classes it was asked for are named
    (model.requested_classes) and what it measures on labelled_set, (uint8 images, labels)."""
    # Every input comes from this seeded generator, none from the global random stream that
    # training draws its noise from: how often quality is measured must not change the run.
    generator = torch.Generator().manual_seed(seed)
    z = model.noise(count, generator)
    balanced = (torch.arange(count) % model.num_classes).to(model.device)  # every class alike
    codes = model.prior_codes(count, balanced, generator=generator)
    chunks = [slice(at, at + batch_size) for at in range(0, count, batch_size)]
    images = torch.cat([model.sample(z=z[rows], **{name: c[rows] for name, c in codes.items()})
                        for rows in chunks])
    quality = scorer.score(images, model.requested_classes(codes))
    return quality | model.score_codes(*labelled_set, batch_size)


def watched_columns(model):
    """The log.csv columns `watch` fills: the 2,000-sample FID and the model's own figures."""
    return ["fid_2k", *model.watched_scores]


def watch(model, scorer, batch_size, seed, validation_set):
    """The figures log.csv follows during training, from 2,000 samples, with what the model adds
    (on the validation split, never the test set)."""
    quality = measure(model, scorer, 2000, batch_size, seed, validation_set)
    return {"fid_2k": quality["fid"],
            **{column: quality[name] for column, name in model.watched_scores.items()}}


def final_report(model, scorer, count, batch_size, seed, test_set, epoch, out):
    """The end of a run: FID of `count` samples against the test set, its floor, the class shares
    and the model's own figures, to out/fid.csv (written whole) and the screen."""
    quality = measure(model, scorer, count, batch_size, seed, test_set)
    fid, floor, shares = quality["fid"], quality["floor"], quality["shares"]
    columns, lines = model.report(quality)
    row = {"epoch": epoch, "samples": count, "fid": f"{fid:.4f}", "floor": f"{floor:.4f}",
           "fid_over_floor": f"{fid / floor:.2f}", **columns,
           **{f"class_{c}": f"{share:.4f}" for c, share in enumerate(shares)}}
    write_csv(out / "fid.csv", [row])
    print(f"FID of {count} samples against the test set: {fid:.3f} (floor {floor:.3f}: "
          f"{quality['floor_images']} held-out real images; {fid / floor:.2f}x); class shares: "
          + " ".join(f"{c}:{s:.3f}" for c, s in enumerate(shares)))
    for line in lines:
        print(line)


def save_fid_curve(path, log_rows):
    """The 2,000-sample FID over the epochs it was measured in (log.csv's fid_2k), if it was."""
    measured = [row for row in log_rows if row.get("fid_2k")]
    if measured:
        curve = ([int(r["epoch"]) for r in measured], [float(r["fid_2k"]) for r in measured])
        save_curves(path, {"FID, 2,000 samples": curve},
                    title="FID of 2,000 samples against the test set", y_label="FID")
