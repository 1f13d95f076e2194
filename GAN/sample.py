"""Generate images from a trained GAN without training.

    python GAN/sample.py GAN/results/mnist-gan/checkpoint.pt --num 64 --out samples.png    # a grid
    python GAN/sample.py GAN/results/mnist-gan/checkpoint.pt --num 10000 --out samples.pt  # float N x C x H x W in [0, 1]
    python GAN/fid.py samples.pt --data-root ../shared/data                             # its FID and class histogram
    python GAN/sample.py GAN/results/mnist-cgan/checkpoint.pt --num 1000 --labels 3 7 --out sevens_and_threes.pt

Each image is G(z) for z ~ N(0, I), with the generator's BatchNorm in eval mode (its running statistics).
Conditional models draw the classes given by --labels (InfoGAN: values of its categorical code c1), else
every class in turn; a .pt output gets the labels beside it (samples.pt -> samples.labels.pt), which
GAN/fid.py then uses to report how often the requested class was drawn. InfoGAN's c1 is a code whose
values map to digits in an order of the training run's own, not a class, so its values go to
samples.c1.pt instead, where GAN/fid.py does not take them for requested classes. To learn that order:

    python GAN/sample.py GAN/results/mnist-infogan/checkpoint.pt --clusters    # the digit each c1 value draws
"""
import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any working directory

import torch

from common import InputError
from common.data import load_dataset
from common.figures import check_samples_path, write_samples
from common.utils import add_sample_flags, choose_device, load_trained_model
from GAN.evaluate import best_assignment, category_codes, code_label_counts
from GAN.model import CGAN, InfoGAN, make_gan


def main():
    parser = argparse.ArgumentParser(description="Sample images from a trained GAN.")
    add_sample_flags(parser)
    parser.add_argument("--labels", type=int, nargs="+", default=None,
                        help="conditional models: the classes to draw, repeated up to --num images; None: 0, 1, ..., 9, 0, ...")
    parser.add_argument("--clusters", action="store_true",
                        help="infogan: instead of sampling, encode the test set with Q and print the class each c1 "
                             "value holds (the best one-to-one map, as train.py scores it)")
    parser.add_argument("--data-root", default=None, help="--clusters: where the dataset is; None: the training run's")
    args = parser.parse_args()
    try:
        check_samples_path(args.out)
        device = choose_device(args.device)
        model, checkpoint = load_trained_model(args.checkpoint, "GAN", make_gan, device)
        if args.clusters:
            print_clusters(model, checkpoint["args"], args.data_root)
            return
        labels = requested_labels(model, args.labels, args.num)
        torch.manual_seed(args.seed)
        images = torch.cat([model.sample(z=model.noise(min(args.batch_size, args.num - start)),
                                         labels=None if labels is None else labels[start:start + args.batch_size].to(device)).cpu()
                            for start in range(0, args.num, args.batch_size)])
        write_samples(images, args.out)
        print(f"wrote {args.num} samples {tuple(images.shape[1:])} to {args.out}")
        if labels is not None and Path(args.out).suffix == ".pt":
            infogan = isinstance(model, InfoGAN)
            path = Path(args.out).with_suffix(".c1.pt" if infogan else ".labels.pt")
            torch.save(labels, path)
            print(f"wrote their {'c1 codes' if infogan else 'labels'} to {path}")
    except InputError as error:
        sys.exit(f"error: {error}")


def print_clusters(model, run, data_root=None):
    """Which class of the run's test set each value of InfoGAN's c1 holds, by Q's most likely c1 per image."""
    if not isinstance(model, InfoGAN):
        raise InputError(f"--clusters needs an InfoGAN checkpoint; this one is a {run['model']}")
    images, labels = load_dataset(run["dataset"], data_root or run["data_root"], run["image_size"], train=False)
    if labels is None:
        raise InputError(f"--clusters needs a labelled test set; {run['dataset']} has no labels")
    codes, labels = category_codes(model, images), labels.cpu()
    accuracy, class_of_code, purity = best_assignment(codes, labels, model.num_classes)
    # where a code holds two classes, the second one shows which digits the run merged
    counts = code_label_counts(codes, labels, model.num_classes)
    print(f"c1 -> class, the best one-to-one map over the {len(labels):,} test images: {accuracy:.2%} correct")
    for code, (label, share) in enumerate(zip(class_of_code, purity)):
        shares = counts[code].double() / max(counts[code].sum().item(), 1)
        shares[label] = -1
        runner_up = shares.argmax().item()
        print(f"c1 = {code}: class {label} ({share:.1%} of the test images Q gives c1 = {code} are that class; "
              f"next: class {runner_up}, {shares[runner_up].item():.1%})")


def requested_labels(model, labels, count):
    """The label of each of the `count` images (int64), or None for an unconditional model."""
    if not isinstance(model, (CGAN, InfoGAN)):
        if labels is not None:
            raise InputError("--labels needs a conditional model (--model cgan, acgan or infogan); this checkpoint is a dcgan")
        return None
    labels = list(range(model.num_classes)) if labels is None else labels
    if not all(0 <= label < model.num_classes for label in labels):
        raise InputError(f"--labels must lie in 0..{model.num_classes - 1}, not {labels}")
    return torch.tensor(labels).repeat(math.ceil(count / len(labels)))[:count]


if __name__ == "__main__":
    main()
