"""Datasets decoded once into uint8 tensors, and a batch iterator that slices them on the training device.

    images, labels = load_dataset("mnist", "data", image_size=32, train=True)  # (N, 1, 32, 32) uint8, (N,) int64
    for x, y in Batches(images.to(device), labels.to(device), batch_size=128):  # x: float in [0, 1]
        ...

Decoding every image through PIL in every epoch is what makes the usual DataLoader loop slow; here it
happens once (and for folders of JPEGs, once ever: the decoded tensor is cached in the user's cache
folder, never beside the images). Labels are None for unlabelled data (cars, a flat folder).
"""
import hashlib
import os
import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from common import InputError, save_atomically

DATASETS = ("mnist", "fashion-mnist", "cifar10", "celeba", "cars", "folder", "fake")
DEFAULT_IMAGE_SIZE = {"mnist": 32, "fashion-mnist": 32, "cifar10": 32, "celeba": 64, "cars": 64, "folder": 64, "fake": 32}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

MANUAL_STEPS = {
    "mnist": "put train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
             "t10k-labels-idx1-ubyte (unzipped) in {root}/MNIST/raw/",
    "fashion-mnist": "put the four Fashion-MNIST *-ubyte files (unzipped) in {root}/FashionMNIST/raw/",
    "cifar10": "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it "
               "so that {root}/cifar-10-batches-py/data_batch_1 exists",
    "celeba": "download img_align_celeba.zip and list_eval_partition.txt from the CelebA page "
              "(https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, Google Drive often refuses automatic downloads) "
              "and unzip so that {root}/celeba/img_align_celeba/000001.jpg and {root}/celeba/list_eval_partition.txt exist",
    "cars": "the original Stanford Cars URL is gone: get the images from a mirror (e.g. Kaggle's "
            "'stanford-cars-dataset') and place them so that {root}/stanford_cars/cars_train/ and "
            "{root}/stanford_cars/cars_test/ hold the JPEGs (sub-folders are fine)",
    "folder": "point --data-root at a folder of images, flat or with one sub-folder per class",
}


def load_dataset(name, root, image_size=None, train=True):
    """Return (images, labels): uint8 (N, C, S, S) with S = image_size, and int64 (N,) or None."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    image_size = DEFAULT_IMAGE_SIZE[name] if image_size is None else image_size
    root = Path(root).expanduser()
    if name == "fake":
        return fake_images(256 if train else 64, image_size, seed=0 if train else 1)
    if name in ("mnist", "fashion-mnist"):
        images, labels = load_torchvision_idx(name, root, train)
        if image_size != 28:  # pad to 32x32 so that conv models can halve it down to 4x4
            images = resize(F.pad(images, (2, 2, 2, 2)), image_size)
        return images, labels
    if name == "cifar10":
        images, labels = load_cifar10(root, train)
        return resize(images, image_size), labels
    if name == "celeba":
        return load_celeba(root, image_size, train), None
    if name == "cars":
        return load_image_files(cars_files(root, train), root / "stanford_cars", f"cars-{'train' if train else 'test'}",
                                image_size), None
    return load_folder(root, image_size, train)


def original_area(dataset, size):
    """The rows (and columns) of a loaded image that hold the image itself: MNIST's 28x28 inside the 2-pixel
    padding that load_dataset adds at 32x32 (scaled with the image at other sizes); all of any other image."""
    if dataset in ("mnist", "fashion-mnist") and size != 28:
        pad = 2 * size // 32
        return slice(pad, size - pad)
    return slice(None)


def cache_folder(root):
    """Where the project keeps what it derives from the data under `root` (decoded images, the FID
    classifier): the user's cache ($XDG_CACHE_HOME or ~/.cache)/generative-models/<root's name>-<hash of
    its path>. Never the data folder itself, where it could be read back as data."""
    root = Path(root).expanduser().resolve()
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "generative-models"
    return user_cache / f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:10]}"


def missing(name, root, detail=""):
    return InputError(f"{name} data not found under {root}{detail}. To add it by hand: "
                      + MANUAL_STEPS[name].format(root=root))


def download(name, root, torchvision_class, **options):
    """Let torchvision find or download a dataset; any failure becomes the one-line manual steps, and the
    folders the failed attempt made (the data root itself, if it was missing) are removed again."""
    root = root.resolve()
    first_new = next((folder for folder in reversed((root, *root.parents)) if not folder.exists()), None)
    existing = set() if first_new else {Path(folder) for folder, _, _ in os.walk(root)}
    try:
        return getattr(torchvision.datasets, torchvision_class)(root, download=True, **options)
    except Exception as error:
        if first_new is not None:
            shutil.rmtree(first_new, ignore_errors=True)
        else:  # only the folders this attempt made, with the partial files in them
            made = [Path(f) for f, _, _ in os.walk(root) if Path(f) not in existing and Path(f).parent in existing]
            for folder in made:
                shutil.rmtree(folder, ignore_errors=True)
        raise missing(name, root, f" and the download failed ({type(error).__name__})") from None


def load_torchvision_idx(name, root, train):
    # torchvision finds the raw IDX files if they are there, and downloads them if not
    dataset = download(name, root, "MNIST" if name == "mnist" else "FashionMNIST", train=train)
    return dataset.data.unsqueeze(1), dataset.targets  # (N, 1, 28, 28) uint8, (N,) int64


def load_cifar10(root, train):
    """Read the python-pickle batches directly (torchvision's class insists on the files' md5 sums)."""
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir():
        download("cifar10", root, "CIFAR10", train=train)
    files = sorted(folder.glob("data_batch_*")) if train else [folder / "test_batch"]
    if not files or not all(f.is_file() for f in files):
        raise missing("cifar10", root, f" ({folder} lacks its {'data_batch_*' if train else 'test_batch'} files)")
    images, labels = [], []
    for file in files:
        with open(file, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch[b"labels"])
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def load_celeba(root, image_size, train):
    folder = root / "celeba"
    image_folder = folder / "img_align_celeba"
    if not image_folder.is_dir():
        download("celeba", root, "CelebA", split="train")
    partition_file = folder / "list_eval_partition.txt"
    if partition_file.is_file():  # lines "000001.jpg 0": 0 train, 1 validation, 2 test
        wanted = {"0"} if train else {"2"}
        names = [line.split()[0] for line in partition_file.read_text().splitlines()
                 if len(line.split()) == 2 and line.split()[1] in wanted]
        files = [image_folder / name for name in names]
    else:
        files = held_out_split(sorted(p for p in image_folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), train)
    if not files:
        raise missing("celeba", root, f" ({image_folder} holds no images)")
    return load_image_files(files, folder, f"celeba-{'train' if train else 'test'}", image_size)


def cars_files(root, train):
    folder = root / "stanford_cars" / ("cars_train" if train else "cars_test")

    def image_files():
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []

    if not image_files():  # torchvision's URL for Stanford Cars is dead; should it work, it fills this folder
        download("cars", root, "StanfordCars", split="train" if train else "test")
    files = image_files()
    if not files:
        raise missing("cars", root)
    return files


def load_folder(root, image_size, train):
    """Any folder of images: one sub-folder per class gives labels, a flat folder gives none."""
    if not root.is_dir():
        raise missing("folder", root, " (no such folder)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise missing("folder", root, " (no image files in it)")
    at_top = [f for f in files if len(f.relative_to(root).parts) == 1]
    if classes and at_top:
        raise InputError(f"{root} holds images both at its top level ({at_top[0].name}) and in class sub-folders "
                         f"({', '.join(classes[:3])}): put every image in a class sub-folder, or none")
    files = held_out_split(files, train)
    images = load_image_files(files, root, "train" if train else "test", image_size)
    if not classes:
        return images, None
    return images, torch.tensor([classes.index(f.relative_to(root).parts[0]) for f in files])


def split_training_set(images, labels):
    """((fit images, fit labels), (held-out images, held-out labels)): the last 10,000 training images (a sixth
    of a smaller set) held out, as a validation split or as real images a classifier never saw. labels may be None."""
    count = min(10_000, len(images) // 6)
    fit, held_out = slice(None, -count), slice(-count, None)
    return ((images[fit], None if labels is None else labels[fit]),
            (images[held_out], None if labels is None else labels[held_out]))


def held_out_split(files, train):
    """Every tenth file (in sorted order) is the test set: deterministic, and every class is represented."""
    return [f for i, f in enumerate(files) if (i % 10 != 9) == train]


def load_image_files(files, folder, split, image_size):
    """Decode image files into (N, C, S, S) uint8, cached (cache_folder) so that the next run skips decoding."""
    fingerprint = hashlib.sha1("\n".join(f"{f.relative_to(folder)}:{f.stat().st_size}" for f in files).encode()).hexdigest()
    cache = cache_folder(folder) / f"decoded-{split}-{image_size}px.pt"
    if cache.is_file():
        try:
            cached = torch.load(cache, weights_only=True)
            if cached["fingerprint"] == fingerprint:
                return cached["images"]
        except Exception:
            pass  # a damaged or outdated cache is simply rebuilt
    print(f"decoding {len(files)} images from {folder} (once: the result is cached)", flush=True)

    def decode(file):  # (S, S) for a grayscale file, (S, S, 3) for any other
        try:
            with Image.open(file) as image:
                mode = "L" if image.mode in ("1", "L", "I;16") else "RGB"
                return np.asarray(square_resize(image.convert(mode), image_size))
        except OSError as error:
            raise InputError(f"cannot read image {file}: {error}") from None

    with ThreadPoolExecutor() as pool:  # PIL releases the GIL while decoding
        arrays = list(pool.map(decode, files))
    if all(array.ndim == 2 for array in arrays):  # a grayscale folder stays one channel
        images = torch.from_numpy(np.stack(arrays)).unsqueeze(1)
    else:
        arrays = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    try:
        save_atomically({"fingerprint": fingerprint, "images": images}, cache)
    except (OSError, RuntimeError) as error:  # torch.save reports a folder it cannot write as a RuntimeError
        print(f"note: could not cache the decoded images at {cache} ({error}); they are decoded again next time")
    return images


def square_resize(image, size):
    """Center-crop a PIL image to a square, then resize it to size x size."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side))


def resize(images, size):
    """Resize a whole uint8 batch (N, C, H, W), in chunks to bound memory."""
    if images.shape[-1] == size:
        return images
    chunks = [F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
              for chunk in images.split(4096)]
    return torch.cat(chunks).round().clamp(0, 255).to(torch.uint8)


def fake_images(count, image_size, seed):
    """A few random images in memory, for smoke runs: ten classes, each a blurred random pattern plus noise."""
    generator = torch.Generator().manual_seed(seed)
    patterns = F.interpolate(torch.rand(10, 1, 4, 4, generator=torch.Generator().manual_seed(0)), size=image_size,
                             mode="bilinear")
    labels = torch.arange(count) % 10
    images = patterns[labels] * 0.8 + 0.2 * torch.rand(count, 1, image_size, image_size, generator=generator)
    return (images * 255).round().to(torch.uint8), labels


class Batches:
    """Mini-batches sliced from uint8 images that live on the training device, as float in value_range.

    The order is drawn from a seeded generator; its state (`self.generator.get_state()`) goes into
    checkpoints, so a resumed run sees exactly the batches an uninterrupted one would. Under torchrun,
    batch_size is the whole batch of a step: every process draws the same order and takes its own
    batch_size / world_size images of each batch (`shard`), so together they see what one process would.
    """

    def __init__(self, images, labels, batch_size, shuffle=True, drop_last=True, seed=0, value_range=(0.0, 1.0),
                 rank=0, world_size=1):
        if drop_last and len(images) < batch_size:
            raise InputError(f"{len(images)} images make no full batch of {batch_size}: lower --batch-size")
        if batch_size % world_size:
            raise InputError(f"--batch-size {batch_size} (the whole batch of a step) does not split evenly over "
                             f"{world_size} processes")
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.shuffle, self.drop_last, self.value_range = shuffle, drop_last, value_range
        self.generator = torch.Generator().manual_seed(seed)
        per_process = batch_size // world_size
        self.part = slice(rank * per_process, (rank + 1) * per_process)  # this process's rows of each batch

    def __len__(self):
        count = len(self.images)
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def shard(self, tensor):
        """This process's rows of something drawn for the whole batch (all of it in a single process)."""
        return tensor[self.part]

    def __iter__(self):
        count = len(self.images)
        order = torch.randperm(count, generator=self.generator) if self.shuffle else torch.arange(count)
        order = order.to(self.images.device)
        low, high = self.value_range
        for step in range(len(self)):
            index = self.shard(order[step * self.batch_size:(step + 1) * self.batch_size])
            x = self.images[index].float() * ((high - low) / 255) + low
            yield x, None if self.labels is None else self.labels[index]
