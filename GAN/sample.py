"""Generate images from a trained GAN without training.

    python GAN/sample.py GAN/results/mnist-dcgan/checkpoint.pt --num 64 --out samples.png  # a grid
    python GAN/sample.py GAN/results/mnist-dcgan/checkpoint.pt --num 10000 --out samples.pt
    python GAN/fid.py samples.pt                                   # its FID and class histogram
    python GAN/sample.py GAN/results/mnist-cgan/checkpoint.pt --num 1000 --labels 3 7 --out s.pt

Each image is G(z, c) for z from the model's prior, from the averaged G if the run kept one, with
the generator's BatchNorm in eval mode (its running statistics). A .pt file holds float
(N, C, H, W) images in [0, 1]. Conditional models draw the classes given by --labels (InfoGAN:
values of its categorical code c1), else every class in turn; a .pt output gets them beside it
(samples.pt -> samples.labels.pt), which GAN/fid.py then uses to report how often the requested
class was drawn. InfoGAN's c1 is a code whose values map to digits in an order of the training
run's own, not a class, so its values go to samples.c1.pt instead, where GAN/fid.py does not take
them for requested classes. To learn that order:

    python GAN/sample.py GAN/results/mnist-infogan/checkpoint.pt --clusters  # each c1's digit
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any folder

import torch

from common import InputError
from common.data import load_dataset
from common.files import save_tensors
from common.pictures import write_samples
from common.run import (add_sample_flags, choose_device, FlagParser, load_trained_model,
                        run_script, samples_path)
from GAN.model import make_gan


def main():
    parser = FlagParser(description="Sample images from a trained GAN.")
    add_sample_flags(parser)
    parser.add_argument("--labels", type=int, nargs="+", default=None,
                        help="the classes (infogan: values of c1) to draw in turn; None: all")
    parser.add_argument("--clusters", action="store_true",
                        help="infogan: print the class each c1 value draws, on the test set")
    parser.add_argument("--data-root", default=None,
                        help="--clusters: the dataset's folder; None: the training run's")
    run_script(sample_images, parser.parse_args())


def sample_images(args):
    """Write the samples the flags ask for."""
    out = samples_path(args)
    device = choose_device(args.device)
    model, checkpoint = load_trained_model(args.checkpoint, "GAN", make_gan, device)
    if args.clusters:
        print_clusters(model, checkpoint["args"], args.data_root)
        return
    labels = model.category_values(args.labels, args.num)  # None: the model takes none
    torch.manual_seed(args.seed)
    images = []
    for start in range(0, args.num, args.batch_size):
        z = model.noise(min(args.batch_size, args.num - start))
        asked = None if labels is None else labels[start:start + len(z)].to(device)
        images.append(model.sample(z=z, labels=asked).cpu())
    images = torch.cat(images)
    write_samples(images, out)
    print(f"wrote {args.num} samples {tuple(images.shape[1:])} to {out}")
    if labels is not None and out.suffix == ".pt":
        path = out.with_suffix(f".{model.category_name}.pt")
        save_tensors(labels, path)
        print(f"wrote their {model.category_name} to {path}")


def print_clusters(model, run, data_root=None):
    """Which class of the run's test set each value of InfoGAN's c1 holds, by Q's most likely c1
    per image."""
    images, labels = load_dataset(run["dataset"], data_root or run["data_root"], run["image_size"],
                                  train=False)
    if labels is None:
        raise InputError(f"--clusters needs a labelled test set; {run['dataset']} has no labels")
    counts, class_of_code = model.cluster(images, labels)
    matched = sum(counts[code, label].item() for code, label in enumerate(class_of_code))
    print(f"c1 -> class, the best one-to-one map over the {len(labels):,} test images: "
          f"{matched / len(labels):.2%} correct")
    for code, label in enumerate(class_of_code):
        # where a code holds two classes, the second one shows which digits the run merged
        shares = counts[code].double() / max(counts[code].sum().item(), 1)
        share, shares[label] = shares[label].item(), -1
        runner_up = shares.argmax().item()
        print(f"c1 = {code}: class {label} ({share:.1%} of the test images Q gives c1 = {code} are "
              f"that class; next: class {runner_up}, {shares[runner_up].item():.1%})")


if __name__ == "__main__":
    main()
