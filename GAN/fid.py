"""Sample quality for every family: FID in the feature space of a small classifier, and a class
histogram.

    python GAN/fid.py VAE/results/samples.pt                  # any sample.py's tensor
    python GAN/fid.py samples.pt --against validation         # to choose settings on

The file holds float (N, C, H, W) images in [0, 1], N >= 2, with the dataset's channels. With a
samples.labels.pt beside it (GAN/sample.py writes one for the conditional models: the class each
image was asked for), it also reports how often the classifier names the requested class.

How the score is made (the classifier, its held-out images and the floor): GAN/evaluate.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any folder

import torch

from common import InputError
from common.data import load_dataset
from common.run import FlagParser, check_ranges, run_script
from GAN.evaluate import SampleScorer


def main():
    parser = FlagParser(description="FID and class histogram of generated images.")
    parser.add_argument("samples", help="a .pt file of float (N, C, H, W) images in [0, 1]")
    parser.add_argument("--dataset", default="mnist", help="the real data to compare with")
    parser.add_argument("--against", default="test", choices=["test", "validation"],
                        help="the test set (the figure to report), or the validation split (the "
                             "held-out training images, which the classifier never saw)")
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1] / "data"),
                        help="the dataset's folder")
    parser.add_argument("--image-size", type=int, default=None,
                        help="the classifier's input size; None: the dataset's own")
    run_script(score, parser.parse_args())


def score(args):
    """Print the FID and the class histogram of the samples."""
    check_ranges(args)  # --image-size
    images = read_samples(args.samples)
    labels_path = Path(args.samples).with_suffix(".labels.pt")
    labels = read_labels(labels_path, len(images)) if labels_path.is_file() else None
    train_set = load_dataset(args.dataset, args.data_root, args.image_size, train=True)
    test_set = load_dataset(args.dataset, args.data_root, args.image_size, train=False)
    channels, size = train_set[0].shape[1], train_set[0].shape[-1]
    if images.shape[1] != channels:
        raise InputError(f"{args.samples} holds {images.shape[1]}-channel images, and the "
                         f"{args.dataset} images have {channels}")
    if images.shape[-2:] not in ((size, size), (size - 4, size - 4)):  # 28 px: MNIST unpadded
        raise InputError(f"{args.samples} holds {images.shape[-2]}x{images.shape[-1]} images, and "
                         f"the classifier takes the {args.dataset} images' {size}x{size} (see "
                         f"--image-size)")
    classes = 0 if train_set[1] is None else int(train_set[1].max()) + 1
    if labels is not None and not bool(((labels >= 0) & (labels < classes)).all()):
        raise InputError(f"{labels_path} holds classes outside 0..{classes - 1}")
    scorer = SampleScorer(args.dataset, args.data_root, train_set, test_set)
    result = scorer.score(images, labels, args.against)
    floor_source = "held-out training" if args.against == "test" else "test"
    print(f"{len(images)} samples against the {args.against} images: FID "
          f"{result['fid']:.4f} (floor {result['floor']:.4f}: {result['floor_images']} "
          f"{floor_source} images; {result['fid'] / result['floor']:.2f}x the floor)")
    print("class histogram: "
          + " ".join(f"{label}:{share:.3f}" for label, share in enumerate(result["shares"])))
    if labels is not None:
        print(f"requested class recognised in {result['accuracy']:.2%} of the samples; per "
              f"class: " + " ".join(f"{label}:{share:.3f}"
                                    for label, share in enumerate(result["class_accuracy"])))


def read_tensor(path):
    """The tensor in a file torch.save wrote, or one line that says why there is none."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} {'is a folder' if path.is_dir() else 'does not exist'}")
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a picture, a truncated file, a pickle of other objects
        raise InputError(f"{path} cannot be read as a tensor file written by torch.save "
                         f"({type(error).__name__})") from None
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{path} holds a {type(value).__name__}, not an image tensor")
    return value


def read_samples(path):
    """Float (N, C, H, W) images in [0, 1], N >= 2 (a covariance needs two), or one line."""
    images = read_tensor(path)
    must = "the file must hold floats in [0, 1] of shape (N, C, H, W)"
    if images.dim() != 4 or not images.is_floating_point():
        raise InputError(f"{path} holds {images.dtype} values of shape {tuple(images.shape)}; "
                         f"{must}")
    if len(images) < 2 or images[0].numel() == 0:
        raise InputError(f"{path} holds {len(images)} images of shape {tuple(images.shape[1:])}; "
                         f"the FID needs 2 or more")
    if not torch.isfinite(images).all():
        raise InputError(f"{path} holds NaN or infinite values; {must}")
    low, high = images.min().item(), images.max().item()
    if low < 0 or high > 1:
        raise InputError(f"{path} holds values from {low:.4g} to {high:.4g}; {must} (images in "
                         f"[-1, 1] become (x + 1) / 2, images in [0, 255] x / 255)")
    return images


def read_labels(path, count):
    """The class each of `count` images was asked for: an integer (count,) tensor, or one line."""
    labels = read_tensor(path)
    if labels.shape != (count,) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise InputError(f"{path} holds {labels.dtype} values of shape {tuple(labels.shape)}; it "
                         f"must hold the integer class of each of the {count} samples")
    return labels


if __name__ == "__main__":
    main()
