"""Shared fixtures: tiny datasets written in their real on-disk formats, so that tests go through
the real loaders."""

import csv
import errno
import os
import re
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # import AE, VAE, GAN and common as packages, as the scripts do


def write_idx(path, array):
    """MNIST's IDX format: magic (0, 0, dtype 0x08 = uint8, ndim), big-endian sizes, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        file.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        file.write(struct.pack(f">{array.ndim}I", *array.shape))
        file.write(array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path):
    """data/MNIST/raw/ with 50 training and 20 test images: image i is all i, with label i % 10.
    Returns data/, a folder of its own (a run's outputs may not go inside a data folder)."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for prefix, count in [("train", 50), ("t10k", 20)]:
        images = np.stack([np.full((28, 28), i, dtype=np.uint8) for i in range(count)])
        images[:, 10:18, 10:18] = rng.integers(0, 256, (count, 8, 8))
        write_idx(root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10)
    return root


@pytest.fixture
def cifar_root(tmp_path):
    """cifar-10-batches-py/: five training batches of 4 images and a test batch of 3, pickled as
    the original is."""
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, count in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 3)]:
        batch = {
            b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
            b"labels": list(rng.integers(0, 10, count).tolist()),
            b"batch_label": name.encode(),
        }
        with open(folder / name, "wb") as file:
            pickle.dump(batch, file)
    return folder.parent


def write_images(folder, count, size=(40, 30), mode="RGB", suffix=".png", seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
            folder / f"{i:06d}{suffix}"
        )


@pytest.fixture(autouse=True)
def user_cache(tmp_path_factory, monkeypatch):
    """The user's cache folder (decoded images, the FID classifier) goes to one temporary folder
    for the whole test run."""
    folder = tmp_path_factory.getbasetemp() / "user-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder


def read_csv(path):
    """The rows of a CSV file a run wrote, as dicts of strings."""
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def full_disk_for(monkeypatch, name):
    """Every write of a file whose name ends in `name` (".png", "interpolation.png") fails as a
    full disk does, after its bytes went out; returns the undo."""
    from common import files
    real_fsync = files.os.fsync

    def fsync(descriptor):
        written = os.readlink(f"/proc/self/fd/{descriptor}")  # <stem>.<token><suffix>.tmp
        if re.sub(r"\.[0-9a-f]{8}(\.\w+\.tmp)$", r"\1", written).endswith(name + ".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(descriptor)

    monkeypatch.setattr(files.os, "fsync", fsync)
    return lambda: monkeypatch.setattr(files.os, "fsync", real_fsync)
