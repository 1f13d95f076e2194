import os
import pickle

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from common import InputError, data
from common.data import Batches, load_dataset, split_training_set
from conftest import write_idx, write_images


def test_mnist_idx_files_load_padded_to_32(mnist_root):
    images, labels = load_dataset("mnist", mnist_root, train=True)
    assert images.shape == (50, 1, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [i % 10 for i in range(50)]
    assert images[7, 0, 2, 2] == 7                       # image i is filled with value i
    assert images[:, :, :2].eq(0).all() and images[:, :, :, -2:].eq(0).all()  # 2-pixel zero border


def test_mnist_native_and_resized(mnist_root):
    native, _ = load_dataset("mnist", mnist_root, image_size=28, train=False)
    assert native.shape == (20, 1, 28, 28)
    big, _ = load_dataset("mnist", mnist_root, image_size=64, train=False)
    assert big.shape == (20, 1, 64, 64) and big.dtype == torch.uint8
    assert big[5, 0, 32, 8] == 5


def test_fashion_mnist_reads_its_own_folder(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    for prefix, count in [("train", 6), ("t10k", 4)]:
        write_idx(raw / f"{prefix}-images-idx3-ubyte", np.full((count, 28, 28), 9))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count))
    images, labels = load_dataset("fashion-mnist", tmp_path, train=False)
    assert images.shape == (4, 1, 32, 32) and labels.tolist() == [0, 1, 2, 3]


def test_cifar10_pickle_batches(cifar_root):
    images, labels = load_dataset("cifar10", cifar_root, train=True)
    assert images.shape == (20, 3, 32, 32) and labels.shape == (20,)
    with open(cifar_root / "cifar-10-batches-py" / "data_batch_1", "rb") as file:
        first = pickle.load(file, encoding="bytes")
    # The 3072 bytes of a row are the red plane, then green, then blue, each 32x32 row-major.
    assert images[0, 1, 0, 5] == first[b"data"][0, 1024 + 5]
    assert labels[:4].tolist() == list(first[b"labels"])
    test_images, test_labels = load_dataset("cifar10", cifar_root, train=False)
    assert test_images.shape == (3, 3, 32, 32) and test_labels.shape == (3,)


def test_celeba_partition_file_and_center_crop(tmp_path):
    folder = tmp_path / "celeba"
    write_images(folder / "img_align_celeba", 6, size=(178, 218), suffix=".jpg")
    parts = [0, 0, 0, 1, 2, 2]  # train, validation, test
    lines = [f"{i:06d}.jpg {part}\n" for i, part in enumerate(parts)]
    (folder / "list_eval_partition.txt").write_text("".join(lines))
    train, labels = load_dataset("celeba", tmp_path, train=True)
    test, _ = load_dataset("celeba", tmp_path, train=False)
    assert train.shape == (3, 3, 64, 64) and test.shape == (2, 3, 64, 64) and labels is None
    fifth = data.decode(folder / "img_align_celeba" / "000004.jpg", 64)
    assert np.array_equal(test[0].permute(1, 2, 0).numpy(), fifth)


def test_cars_reads_nested_jpegs(tmp_path):
    cars = tmp_path / "stanford_cars"
    write_images(cars / "cars_train" / "cars_train", 5, size=(80, 50), suffix=".jpg")
    write_images(cars / "cars_test", 2, size=(50, 80), suffix=".jpg")
    train, labels = load_dataset("cars", tmp_path, train=True)
    assert train.shape == (5, 3, 64, 64) and labels is None
    assert load_dataset("cars", tmp_path, image_size=32, train=False)[0].shape == (2, 3, 32, 32)


def test_folder_with_class_subfolders(tmp_path):
    write_images(tmp_path / "cats", 10, seed=1)
    write_images(tmp_path / "dogs", 10, seed=2)
    train, train_labels = load_dataset("folder", tmp_path, image_size=16, train=True)
    test, test_labels = load_dataset("folder", tmp_path, image_size=16, train=False)
    assert train.shape == (18, 3, 16, 16) and test.shape == (2, 3, 16, 16)
    assert train_labels.tolist() == [0] * 9 + [1] * 9 and test_labels.tolist() == [0, 1]


def test_flat_grayscale_folder_gives_one_channel_and_no_labels(tmp_path):
    write_images(tmp_path, 10, mode="L")
    images, labels = load_dataset("folder", tmp_path, image_size=8, train=True)
    assert images.shape == (9, 1, 8, 8) and labels is None


def test_decoded_folder_is_cached_and_refreshed_when_files_change(tmp_path, monkeypatch,
                                                                  user_cache):
    write_images(tmp_path / "images", 10)
    first, _ = load_dataset("folder", tmp_path / "images", image_size=8, train=True)
    assert (data.cache_folder(tmp_path / "images") / "decoded-8px.pt").is_file()
    names = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert names == [f"{i:06d}.png" for i in range(10)]  # nothing added beside the images

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cached tensor should have been used")
    with monkeypatch.context() as patch:  # (monkeypatch.undo would undo conftest's cache folder)
        patch.setattr(data.Image, "open", no_decoding)
        again, _ = load_dataset("folder", tmp_path / "images", image_size=8, train=True)
        test, _ = load_dataset("folder", tmp_path / "images", image_size=8, train=False)
    assert torch.equal(first, again) and test.shape == (1, 3, 8, 8)

    write_images(tmp_path / "images", 12)  # two more files: the cache no longer matches
    assert load_dataset("folder", tmp_path / "images", image_size=8, train=True)[0].shape[0] == 11
    assert data.cache_folder(tmp_path / "images").is_relative_to(user_cache)  # not ~/.cache


@pytest.mark.parametrize("suffix, options", [(".bmp", {}), (".tif", {"compression": "raw"})])
def test_an_image_replaced_by_one_of_the_same_size_is_decoded_again(tmp_path, suffix, options):
    def write(value):
        for i in range(10):
            Image.new("L", (8, 8), value).save(tmp_path / f"{i}{suffix}", **options)
    write(10)
    assert load_dataset("folder", tmp_path, image_size=8)[0].max() == 10
    sizes = [p.stat().st_size for p in sorted(tmp_path.iterdir())]
    write(200)
    assert [p.stat().st_size for p in sorted(tmp_path.iterdir())] == sizes
    for path in tmp_path.iterdir():  # a later time, even where the clock is coarse
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert load_dataset("folder", tmp_path, image_size=8)[0].min() == 200


def test_a_folder_of_fewer_than_ten_images_tests_on_its_last(tmp_path):
    write_images(tmp_path, 2, mode="L")
    assert load_dataset("folder", tmp_path, image_size=8, train=False)[0].shape == (1, 1, 8, 8)
    write_images(tmp_path, 5, mode="L")
    train, _ = load_dataset("folder", tmp_path, image_size=8, train=True)
    test, _ = load_dataset("folder", tmp_path, image_size=8, train=False)
    assert train.shape == (4, 1, 8, 8) and test.shape == (1, 1, 8, 8)
    for path in list(tmp_path.iterdir())[1:]:
        path.unlink()
    with pytest.raises(InputError, match="holds 1 image.*needs 2"):
        load_dataset("folder", tmp_path, image_size=8)


def test_grey_and_colour_files_give_both_splits_the_same_channels(tmp_path):
    write_images(tmp_path, 9, mode="RGB")
    Image.new("L", (40, 30), 7).save(tmp_path / "000009.png")  # the test split: one grey file
    train, _ = load_dataset("folder", tmp_path, image_size=8, train=True)
    test, _ = load_dataset("folder", tmp_path, image_size=8, train=False)
    assert train.shape == (9, 3, 8, 8) and test.shape == (1, 3, 8, 8) and test.eq(7).all()


def test_images_are_cropped_to_their_central_square(tmp_path):
    image = Image.new("L", (60, 10), 0)
    image.paste(255, (15, 0, 45, 10))  # white around the central 10x10 square, black at both ends
    image.save(tmp_path / "wide.png")
    assert data.decode(tmp_path / "wide.png", 5).min() == 255


def test_unknown_dataset_is_one_clear_error():
    with pytest.raises(InputError, match="unknown dataset 'imagenet'; choose one of: mnist"):
        load_dataset("imagenet", ".")


@pytest.mark.parametrize("name, torchvision_class", [("mnist", "MNIST"), ("cifar10", "CIFAR10"),
                                                     ("celeba", "CelebA"),
                                                     ("cars", "StanfordCars")])
def test_missing_data_names_the_manual_steps(tmp_path, monkeypatch, name, torchvision_class):
    def failing_download(*args, **kwargs):
        raise RuntimeError("no network")
    monkeypatch.setattr(torchvision.datasets, torchvision_class, failing_download)
    message = f"{name} data not found under .*the download failed.*To add it by hand"
    with pytest.raises(InputError, match=message):
        load_dataset(name, tmp_path / "nothing")


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        load_dataset("folder", tmp_path / "absent")
    with pytest.raises(InputError, match="no image files"):
        load_dataset("folder", tmp_path)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_corrupt_image_is_named(tmp_path, mode):
    write_images(tmp_path, 3, mode=mode)
    (tmp_path / "000001.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="000001.png"):
        load_dataset("folder", tmp_path, image_size=8)


def test_mixed_grayscale_and_colour_folder_gives_three_channels(tmp_path):
    write_images(tmp_path / "a", 5, mode="L")
    write_images(tmp_path / "b", 5, mode="RGB")
    images, _ = load_dataset("folder", tmp_path, image_size=8, train=True)
    assert images.shape == (9, 3, 8, 8)
    grey = images[0]  # a/000000.png, grayscale: its three channels are equal
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_batches_are_seeded_complete_and_scaled():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1) * 25
    labels = torch.arange(10)
    order = [y.tolist() for _, y in Batches(images, labels, 3, seed=5)]
    assert order == [y.tolist() for _, y in Batches(images, labels, 3, seed=5)]
    assert len(order) == 3 and len(set(sum(order, []))) == 9  # drop_last: 3 full batches
    everything = list(Batches(images, labels, 3, shuffle=False, drop_last=False))
    assert [len(y) for _, y in everything] == [3, 3, 3, 1]
    x, y = everything[0]
    assert torch.allclose(x.flatten(), y.float() * 25 / 255)
    two = torch.tensor([0, 255], dtype=torch.uint8)
    signed = next(iter(Batches(two, None, 2, shuffle=False, value_range=(-1, 1))))
    assert signed[0].tolist() == [-1.0, 1.0] and signed[1] is None


def test_too_few_images_for_one_batch_is_one_clear_error():
    with pytest.raises(InputError, match="5 images make no full batch of 8: lower --batch-si"):
        Batches(torch.zeros(5, 1, 2, 2, dtype=torch.uint8), None, 8)
    assert len(Batches(torch.zeros(5, 1, 2, 2, dtype=torch.uint8), None, 8, drop_last=False)) == 1


def test_batches_generator_state_replays_the_same_order():
    batches = Batches(torch.zeros(20, 1, 1, 1, dtype=torch.uint8), torch.arange(20), 4)
    list(batches)
    state = batches.generator.get_state()
    expected = [y.tolist() for _, y in batches]
    batches.generator.set_state(state)
    assert [y.tolist() for _, y in batches] == expected


def test_fake_dataset_is_labelled_and_sized():
    images, labels = load_dataset("fake", "", image_size=64, train=True)
    assert images.shape == (256, 1, 64, 64) and set(labels.tolist()) == set(range(10))


def test_cars_files_that_a_download_brings_are_used(tmp_path, monkeypatch):
    def download_into_place(root, split, download):
        write_images(root / "stanford_cars" / f"cars_{split}", 3, suffix=".jpg")
    monkeypatch.setattr(torchvision.datasets, "StanfordCars", download_into_place)
    images, labels = load_dataset("cars", tmp_path, image_size=16, train=False)
    assert images.shape == (3, 3, 16, 16) and labels is None


def test_a_few_images_still_split_into_fitted_and_held_out():
    images, labels = torch.zeros(5, 1, 4, 4, dtype=torch.uint8), torch.arange(5)
    (fit, fit_labels), (held, held_labels) = split_training_set(images, labels)
    assert (len(fit), len(held)) == (4, 1) and held_labels.tolist() == [4]
    with pytest.raises(InputError, match="cannot be split"):
        split_training_set(images[:1], labels[:1])
