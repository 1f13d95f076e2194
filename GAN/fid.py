"""Sample quality for every family: FID in the feature space of a small classifier, and a class histogram.

    python GAN/fid.py VAE/results/samples.pt --data-root ../shared/data     # a tensor written by any sample.py
    python GAN/fid.py samples.pt --data-root ../shared/data --against validation   # to choose settings on

With a samples.labels.pt beside the tensor (GAN/sample.py writes one for conditional models), it also
reports how often the classifier names the requested class.

How the score is made (the classifier, its held-out images and the floor): GAN/evaluate.py.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find common/ from any working directory

import torch

from common import InputError
from GAN.evaluate import SampleScorer


def main():
    parser = argparse.ArgumentParser(description="FID and class histogram of generated images (a .pt from sample.py).")
    parser.add_argument("samples", help="a .pt tensor of float (N, C, H, W) images in [0, 1], e.g. from sample.py --out x.pt")
    parser.add_argument("--dataset", default="mnist", help="the real data to compare with")
    parser.add_argument("--against", default="test", choices=["test", "validation"],
                        help="the test set (the figure to report), or the validation split: the last 10,000 "
                             "training images, which the classifier never saw, to choose settings on")
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1] / "data"))
    parser.add_argument("--image-size", type=int, default=None, help="the classifier's input size; None: the dataset's own")
    args = parser.parse_args()
    try:
        if not Path(args.samples).is_file():
            raise InputError(f"{args.samples} does not exist")
        images = torch.load(args.samples, map_location="cpu", weights_only=True)
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise InputError(f"{args.samples} does not hold a (N, C, H, W) image tensor")
        scorer = SampleScorer(args.dataset, args.data_root, args.image_size)
        labels_path = Path(args.samples).with_suffix(".labels.pt")
        labels = torch.load(labels_path, weights_only=True) if labels_path.is_file() else None
        result = scorer.score(images, labels, args.against)
        floor_source = "held-out training" if args.against == "test" else "test"
        print(f"{len(images)} samples against the {args.against} images: FID {result['fid']:.4f} (floor {result['floor']:.4f}: "
              f"{result['floor_images']} {floor_source} images; {result['fid'] / result['floor']:.2f}x the floor)")
        print("class histogram: " + " ".join(f"{label}:{share:.3f}" for label, share in enumerate(result["shares"])))
        if labels is not None:
            print(f"requested class recognised in {result['accuracy']:.2%} of the samples; per class: "
                  + " ".join(f"{label}:{share:.3f}" for label, share in enumerate(result["class_accuracy"])))
    except InputError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
