"""Datasets decoded once into uint8 tensors, and a batch iterator that slices them on the device.

    images, labels = load_dataset("mnist", "data", image_size=32)  # (N, 1, 32, 32) uint8, (N,)
    for x, y in Batches(images.to(device), labels.to(device), batch_size=128):  # x in [0, 1]

Decoding every image in every epoch is what makes the usual DataLoader loop slow; here it happens
once (for image files once ever: they are cached in the user's cache folder, never beside them).
Labels are None for unlabelled data (cars, a flat folder)."""
import hashlib
import io
import os
import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image, ImageOps

from common import InputError
from common.files import save_tensors

try:  # colour management: some Pillow builds lack it, and then colour profiles are ignored
    from PIL import ImageCms
except ImportError:
    ImageCms = None

DATASETS = ("mnist", "fashion-mnist", "cifar10", "celeba", "cars", "folder", "fake")
DEFAULT_IMAGE_SIZE = {"mnist": 32, "fashion-mnist": 32, "cifar10": 32, "celeba": 64, "cars": 64,
                      "folder": 64, "fake": 32}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pbm",
                  ".pgm", ".ppm", ".pnm"}
MANUAL_STEPS = {
    "mnist": "put the four *-ubyte files (train-images-idx3-ubyte, ...; unzipped) in "
             "{root}/MNIST/raw/",
    "fashion-mnist": "put the four *-ubyte files (unzipped) in {root}/FashionMNIST/raw/",
    "cifar10": "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
               "and unpack it so that {root}/cifar-10-batches-py/data_batch_1 exists",
    "celeba": "get img_align_celeba.zip and list_eval_partition.txt from the CelebA page "
              "(https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html) so that {root}/celeba/ holds "
              "list_eval_partition.txt and img_align_celeba/000001.jpg ... (unzipped)",
    "cars": "the Stanford Cars URL is gone: get the images from a mirror (e.g. Kaggle's "
            "'stanford-cars-dataset') so that {root}/stanford_cars/cars_train/ and cars_test/ "
            "hold the JPEGs (sub-folders are fine)",
    "folder": "point --data-root at a folder of images, flat or with one sub-folder per class",
}


def load_dataset(name, root, image_size=None, train=True):
    """(images, labels): uint8 (N, C, S, S), S = image_size (the caller checks that its model can
    take S, before loading), and int64 (N,) or None."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    image_size = DEFAULT_IMAGE_SIZE[name] if image_size is None else image_size
    root = Path(root).expanduser()
    if name == "fake":
        return fake_images(256 if train else 64, image_size, seed=0 if train else 1)
    if name in ("mnist", "fashion-mnist"):  # torchvision finds the raw IDX files, or downloads them
        found = download(name, root, "MNIST" if name == "mnist" else "FashionMNIST", train=train)
        images = found.data.unsqueeze(1)  # (N, 1, 28, 28) uint8
        if image_size != 28:  # pad to 32x32 so that conv models can halve it down to 4x4
            images = resize(F.pad(images, (2, 2, 2, 2)), image_size)
        return images, found.targets
    if name == "cifar10":
        images, labels = load_cifar10(root, train)
        return resize(images, image_size), labels
    folder, files, test, labels = list_image_files(name, root)
    rows = ~test if train else test
    if not rows.any():
        raise InputError(f"{folder} holds no {'training' if train else 'test'} images")
    images = load_image_files(files, folder, image_size)[rows]
    return images, None if labels is None else labels[rows]


def original_area(dataset, size):
    """The rows (and columns) of a loaded image that hold the image itself: MNIST's 28x28 inside
    the padding load_dataset adds (2 pixels at 32x32); all of any other image."""
    pad = 2 * size // 32 if dataset in ("mnist", "fashion-mnist") and size != 28 else 0
    return slice(pad, size - pad)


def cache_folder(root):
    """Where the project keeps what it derives from the data under `root` (decoded images, the FID
    classifier): in the user's cache, never in the data folder, where it could be read as data."""
    root = Path(root).expanduser().resolve()
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path_hash = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    return user_cache / "generative-models" / f"{root.name}-{path_hash}"


def missing(name, root, detail=""):
    return InputError(f"{name} data not found under {root}{detail}. To add it by hand: "
                      + MANUAL_STEPS[name].format(root=root))


def download(name, root, torchvision_class, **options):
    """Let torchvision find or download a dataset; a failure becomes the one-line manual steps, and
    the folders the failed attempt made (the data root itself, if it was missing) go again."""
    root = root.resolve()
    first_new = next((f for f in reversed((root, *root.parents)) if not f.exists()), None)
    existing = set() if first_new else {Path(folder) for folder, _, _ in os.walk(root)}
    try:
        return getattr(torchvision.datasets, torchvision_class)(root, download=True, **options)
    except Exception as error:
        made = [Path(folder) for folder, _, _ in os.walk(root)]
        made = [folder for folder in made if folder not in existing and folder.parent in existing]
        for folder in [first_new] if first_new else made:
            shutil.rmtree(folder, ignore_errors=True)
        raise missing(name, root, f" and the download failed ({type(error).__name__})") from None


def load_cifar10(root, train):
    """Read the python-pickle batches directly (torchvision's class insists on the md5 sums)."""
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir():
        download("cifar10", root, "CIFAR10", train=train)
    files = sorted(folder.glob("data_batch_*")) if train else [folder / "test_batch"]
    if not files or not all(f.is_file() for f in files):
        wanted = "data_batch_*" if train else "test_batch"
        raise missing("cifar10", root, f" ({folder} lacks its {wanted} files)")
    images, labels = [], []
    for file in files:
        try:
            with open(file, "rb") as handle:
                batch = pickle.load(handle, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[b"labels"])
        except Exception as error:  # truncated, or not CIFAR-10's pickle: all mean the same here
            damage = f" ({file} is damaged: {type(error).__name__})"
            raise missing("cifar10", root, damage) from None
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def list_image_files(name, root):
    """(folder, files, test, labels) of a data set of image files: the training and the test files
    together (test: a bool per file), so that both splits are decoded alike."""
    if name == "celeba":
        folder = root / "celeba"
        if not (folder / "img_align_celeba").is_dir():
            download("celeba", root, "CelebA", split="train")
        partition_file = folder / "list_eval_partition.txt"
        if not partition_file.is_file():
            files = image_files(folder / "img_align_celeba")
            return folder, files, held_out(files, folder), None
        # lines "000001.jpg 0": 0 train, 1 validation, 2 test
        split = dict(line.split() for line in partition_file.read_text().splitlines()
                     if line.split()[1:] in (["0"], ["2"]))
        test = torch.tensor([part == "2" for part in split.values()], dtype=torch.bool)
        return folder, [folder / "img_align_celeba" / file for file in split], test, None
    if name == "cars":
        folder = root / "stanford_cars"
        for split in ("train", "test"):  # torchvision's URL is dead; should it work, it fills these
            if not image_files(folder / f"cars_{split}"):
                download("cars", root, "StanfordCars", split=split)
        train, test = image_files(folder / "cars_train"), image_files(folder / "cars_test")
        if not train or not test:
            raise missing("cars", root)
        return folder, train + test, torch.arange(len(train) + len(test)) >= len(train), None
    # any folder: one sub-folder per class gives labels, a flat folder gives none
    if not root.is_dir():
        raise missing("folder", root, " (no such folder)")
    files = image_files(root)
    if not files:
        raise missing("folder", root, " (no image files in it)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    at_top = [f for f in files if len(f.relative_to(root).parts) == 1]
    if classes and at_top:
        raise InputError(f"{root} holds images both at its top level ({at_top[0].name}) and in "
                         f"class sub-folders ({', '.join(classes[:3])}): put every image in a "
                         "class sub-folder, or none")
    if not classes:
        return root, files, held_out(files, root), None
    labels = torch.tensor([classes.index(f.relative_to(root).parts[0]) for f in files])
    return root, files, held_out(files, root), labels


def image_files(folder):
    """The image files in folder and its sub-folders (hidden ones left out), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def held_out(files, folder):
    """Test on every tenth file (sorted: deterministic, every class represented), or the last."""
    if len(files) < 2:
        raise InputError(f"{folder} holds {len(files)} image(s): a run needs 2, one to test on")
    test = torch.arange(len(files)) % 10 == 9
    test[-1] |= len(files) < 10
    return test


def split_training_set(images, labels):
    """((images, labels) to fit, (images, labels) held out: the last 10,000, or a sixth of fewer
    (at least one), for validation or as real images a classifier never saw. labels may be None."""
    if len(images) < 2:
        raise InputError(f"{len(images)} training image(s) cannot be split to hold some out")
    count = max(1, min(10_000, len(images) // 6))
    fit, held = slice(None, -count), slice(-count, None)
    return ((images[fit], None if labels is None else labels[fit]),
            (images[held], None if labels is None else labels[held]))


def load_image_files(files, folder, image_size):
    """Decode image files into (N, C, S, S) uint8: one channel if every file is grey, else three.
    Cached (cache_folder) until a file is added, removed, or changes in size or time."""
    try:
        listing = "\n".join(f"{f.relative_to(folder)} {s.st_size} {s.st_mtime_ns} {s.st_ctime_ns}"
                            for f in files for s in [f.stat()])
    except OSError as error:  # a broken link, a file a listing names that is not there
        raise InputError(f"cannot read image {error.filename}: {error.strerror}") from None
    fingerprint = hashlib.sha1(listing.encode()).hexdigest()
    cache = cache_folder(folder) / f"decoded-{image_size}px.pt"
    try:  # mapped, not read: a split takes only its own rows into memory
        cached = torch.load(cache, weights_only=True, mmap=True)
        if cached["fingerprint"] == fingerprint:
            return cached["images"]
    except Exception:
        pass  # no cache yet, or a damaged one: decoded again
    print(f"decoding {len(files)} images from {folder} (once: the result is cached)", flush=True)
    with ThreadPoolExecutor() as pool:  # PIL releases the GIL while decoding
        arrays = list(pool.map(decode, files, [image_size] * len(files)))
    if any(array.shape[2] == 3 for array in arrays):  # a colour file: every image in colour
        arrays = [np.broadcast_to(array, (image_size, image_size, 3)) for array in arrays]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    try:
        save_tensors({"fingerprint": fingerprint, "images": images}, cache)
    except InputError as error:
        print(f"note: could not cache the decoded images ({error}); decoded again next time")
    return images


def decode(file, size):
    """An image file as a viewer shows it, center-cropped to (S, S, 1) if grey, else (S, S, 3)."""
    try:
        with Image.open(file) as image:
            shown = as_shown(image)
    except Exception as error:  # whatever a damaged file makes PIL raise
        raise InputError(f"cannot read image {file}: {error}") from None
    width, height = shown.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = (left, top, left + side, top + side)
    return np.atleast_3d(np.asarray(shown.resize((size, size), Image.BICUBIC, box=square)))


def as_shown(image):
    """What a viewer shows of an opened file, in mode L (grey files) or RGB: the first frame,
    upright by its EXIF orientation (Pillow turns TIFFs itself), in 8 bits (to_8_bit), transparent
    parts over white (a page's background), an embedded colour profile converted to sRGB."""
    palette = np.array(image.getpalette(rawmode="RGB") or [0, 0, 0]).reshape(-1, 3)
    grey = image.mode in ("1", "L", "LA", "La", "F") or image.mode.startswith("I") or (
        image.mode in ("P", "PA") and bool((palette == palette[:, :1]).all()))  # a grey palette
    ImageOps.exif_transpose(image, in_place=True)
    shown = image
    if shown.mode == "F" or shown.mode.startswith("I"):
        stored = np.asarray(shown)
        shown = to_8_bit(shown, getattr(image, "tag_v2", {}))
        if "transparency" in image.info:  # a transparent value (PNG's tRNS): white, as below
            white = stored == image.info["transparency"]
            shown = Image.fromarray(np.where(white, 255, np.asarray(shown)).astype(np.uint8))
    if shown.mode.endswith(("A", "a")) or "transparency" in shown.info:
        shown = Image.alpha_composite(Image.new("RGBA", shown.size, "white"), shown.convert("RGBA"))
    if shown.mode not in ("L", "RGB", "CMYK"):  # 1, P, RGBA, YCbCr, LAB, HSV
        shown = shown.convert("L" if grey else "RGB")
    if ImageCms and image.info.get("icc_profile"):
        try:
            shown = ImageCms.profileToProfile(shown, io.BytesIO(image.info["icc_profile"]),
                                              ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a damaged profile, or one for other colours than the image's: as stored
    return shown.convert("L" if grey else "RGB")


def to_8_bit(image, tiff_tags):
    """A grey image of more than 8 bits (modes I, I;16*, F) in 8, scaled as viewers do: integers
    from 0 to 2**bits - 1 (signed ones shifted up by half that), floats from 0 to 1. bits: as the
    TIFF tags say, else 16 (PNG; PNM, which Pillow scales to 16 bits), so 12-bit values stored as
    16-bit samples look dark, as in a viewer. No picture fills 32 bits: such files (numpy's int32
    saved by Pillow) hold 8 or 16, so the image's largest value decides (negatives are black)."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    if image.mode != "F":
        bits, signed = tiff_tags.get(258, (16,))[0], tiff_tags.get(339, (1,))[0] == 2
        values = values if signed else values % 2 ** bits  # Pillow reads uint32 as int32
        if bits == 32:
            bits, signed = next(b for b in (8, 16, 32) if values.max() < 2 ** b), False
        values = (values + 2 ** (bits - 1) if signed else values) / (2 ** bits - 1)
    values = np.clip(values, 0, 1)
    if tiff_tags.get(262) == 0:  # TIFF's "min is white", left to us above 8 bits
        values = 1 - values
    return Image.fromarray(np.round(values * 255).astype(np.uint8))


def resize(images, size):
    """Resize a whole uint8 batch (N, C, H, W), in chunks to bound memory."""
    if images.shape[-1] == size:
        return images
    chunks = [F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True,
                            align_corners=False) for chunk in images.split(4096)]
    return torch.cat(chunks).round().clamp(0, 255).to(torch.uint8)


def fake_images(count, image_size, seed):
    """Random images in memory, for smoke runs: ten classes, each a blurred pattern plus noise."""
    generator = torch.Generator().manual_seed(seed)
    patterns = torch.rand(10, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    patterns = F.interpolate(patterns, size=image_size, mode="bilinear")
    labels = torch.arange(count) % 10
    noise = torch.rand(count, 1, image_size, image_size, generator=generator)
    return (patterns[labels] * 0.8 + 0.2 * noise).mul(255).round().to(torch.uint8), labels


class Batches:
    """Mini-batches sliced from uint8 images on the training device, as float in value_range.

    The order comes from a seeded generator whose state (`generator.get_state()`) goes into
    checkpoints, so a resumed run sees the batches an uninterrupted one would. Under torchrun,
    batch_size is the whole batch of a step: every process draws the same order and takes its own
    batch_size / world_size images of each batch (`shard`), together what one process would see."""

    def __init__(self, images, labels, batch_size, shuffle=True, drop_last=True, seed=0,
                 value_range=(0.0, 1.0), rank=0, world_size=1):
        if drop_last and len(images) < batch_size:
            raise InputError(f"{len(images)} images make no full batch of {batch_size}: "
                             "lower --batch-size")
        if batch_size % world_size:
            raise InputError(f"--batch-size {batch_size} (the whole batch of a step) does not "
                             f"split evenly over {world_size} processes")
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.shuffle, self.drop_last, self.value_range = shuffle, drop_last, value_range
        self.generator = torch.Generator().manual_seed(seed)
        per_process = batch_size // world_size
        self.part = slice(rank * per_process, (rank + 1) * per_process)  # this process's rows

    def __len__(self):
        count = len(self.images)
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def shard(self, tensor):
        """This process's rows of something drawn for the whole batch (all of it in one process)."""
        return tensor[self.part]

    def __iter__(self):
        n = len(self.images)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.images.device)
        low, high = self.value_range
        for step in range(len(self)):
            index = self.shard(order[step * self.batch_size:(step + 1) * self.batch_size])
            x = self.images[index].float() * ((high - low) / 255) + low
            yield x, None if self.labels is None else self.labels[index]
