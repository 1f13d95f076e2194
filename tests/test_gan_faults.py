"""GAN/sample.py, GAN/fid.py and GAN/train.py on bad input and interrupted ends: each case ends in
one line that says what is wrong, and a cut-short end of a run can be finished."""
import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from common.run import load_checkpoint
from GAN import fid as fid_script
from GAN import sample as gan_sample
from GAN import train as gan_train
from GAN.model import GAN, InfoGAN
from test_vae_train import error_of, run_main

FAST = ["--dataset", "fake", "--epochs", "1", "--width", "8", "--batch-size", "32",
        "--device", "cpu", "--fid-every", "0", "--fid-samples", "0"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A DCGAN trained for one epoch on the fake data."""
    out = tmp_path_factory.mktemp("gan") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_main(gan_train, monkeypatch, *FAST, "--out", str(out))
    return out / "checkpoint.pt"


# ---- GAN/sample.py ----

@pytest.mark.parametrize("flags", [["--num", "0"], ["--num", "-1"], ["--batch-size", "0"]])
def test_sample_counts_that_make_no_images_end_in_one_line(flags, checkpoint, tmp_path,
                                                           monkeypatch):
    message = error_of(gan_sample, monkeypatch, str(checkpoint), "--out", str(tmp_path / "s.pt"),
                       *flags)
    assert f"{flags[0]} must be > 0" in message and not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["s.png", "s.pt"])
def test_a_sample_file_that_cannot_be_written_ends_in_one_line(name, checkpoint, tmp_path,
                                                               monkeypatch):
    (tmp_path / "a-file").write_text("")
    message = error_of(gan_sample, monkeypatch, str(checkpoint), "--num", "4",
                       "--out", str(tmp_path / "a-file" / name))
    assert "could not write" in message and "a-file" in message


def test_sample_help_shows_the_defaults(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        run_main(gan_sample, monkeypatch, "--help")
    text = capsys.readouterr().out
    assert "(default: 64)" in text and "(default: 1000)" in text


# ---- GAN/fid.py ----

def write_png(path):
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(path, format="PNG")


def write_truncated(path):
    torch.save(torch.rand(10, 1, 32, 32), path)
    path.write_bytes(path.read_bytes()[:500])


@pytest.mark.parametrize("write, expected", [
    (write_png, "cannot be read as a tensor file"),
    (write_truncated, "cannot be read as a tensor file"),
    (lambda path: torch.save(argparse.Namespace(a=1), path), "cannot be read as a tensor file"),
    (lambda path: torch.save({"images": torch.rand(4, 1, 32, 32)}, path), "not an image tensor"),
    (lambda path: torch.save(torch.rand(4, 32, 32), path), "must hold floats in [0, 1]"),
    (lambda path: torch.save(torch.rand(4, 1, 32, 32) * 2 - 1, path), "must hold floats in [0, 1]"),
    (lambda path: torch.save(torch.rand(4, 1, 32, 32) * 255, path), "must hold floats in [0, 1]"),
    (lambda path: torch.save(torch.randint(256, (4, 1, 32, 32), dtype=torch.uint8), path),
     "must hold floats in [0, 1]"),
    (lambda path: torch.save(torch.full((4, 1, 32, 32), float("nan")), path), "NaN"),
    (lambda path: torch.save(torch.full((4, 1, 32, 32), float("inf")), path), "NaN or infinite"),
    (lambda path: torch.save(torch.rand(0, 1, 32, 32), path), "2 or more"),
    (lambda path: torch.save(torch.rand(1, 1, 32, 32), path), "2 or more"),
    (lambda path: torch.save(torch.rand(4, 3, 32, 32), path), "3-channel images"),
])
def test_fid_refuses_what_it_cannot_score_in_one_line(write, expected, mnist_root, tmp_path,
                                                      monkeypatch):
    write(tmp_path / "samples.pt")
    message = error_of(fid_script, monkeypatch, str(tmp_path / "samples.pt"),
                       "--data-root", str(mnist_root))
    assert expected in message
    assert "weights_only" not in message  # never torch's advice to load unsafely


@pytest.mark.parametrize("labels, expected", [
    (torch.arange(3), "each of the 4 samples"),
    (torch.zeros(4), "each of the 4 samples"),
    (torch.tensor([0, 1, 2, 10]), "outside 0..9"),
])
def test_fid_refuses_labels_that_do_not_fit_the_samples(labels, expected, mnist_root, tmp_path,
                                                        monkeypatch):
    torch.save(torch.rand(4, 1, 32, 32), tmp_path / "samples.pt")
    torch.save(labels, tmp_path / "samples.labels.pt")
    message = error_of(fid_script, monkeypatch, str(tmp_path / "samples.pt"),
                       "--data-root", str(mnist_root))
    assert expected in message


# ---- GAN/train.py ----

def test_a_model_with_batchnorm1d_and_one_image_per_step_ends_in_one_line(tmp_path, monkeypatch):
    message = error_of(gan_train, monkeypatch, *FAST, "--model", "infogan", "--batch-size", "1",
                       "--out", str(tmp_path / "run"))
    assert "--batch-size 1" in message and "BatchNorm1d" in message
    assert not (tmp_path / "run").exists()
    assert GAN(width=8).smallest_batch == 1  # BatchNorm2d has a whole map per channel
    assert InfoGAN(width=8, loss="wgan-gp").smallest_batch == 2  # G's hidden layer
    assert InfoGAN(width=8, generator_hidden=0, discriminator_hidden=0).smallest_batch == 1


def test_an_end_of_run_cut_short_is_finished_on_resume(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    flags = [*FAST, "--fid-samples", "100", "--out", str(out)]
    run_main(gan_train, monkeypatch, *flags[:-2], "--out", str(tmp_path / "straight"))
    real_gif = gan_train.save_training_gif

    def interrupt(*args, **options):
        raise KeyboardInterrupt
    monkeypatch.setattr(gan_train, "save_training_gif", interrupt)
    with pytest.raises(SystemExit):
        run_main(gan_train, monkeypatch, *flags)
    assert not (out / "training.gif").exists()
    assert not load_checkpoint(out / "checkpoint.pt", "GAN").get("finished")
    monkeypatch.setattr(gan_train, "save_training_gif", real_gif)
    capsys.readouterr()
    run_main(gan_train, monkeypatch, "--resume", str(out / "checkpoint.pt"))
    assert "finishing the run's end" in capsys.readouterr().out
    assert (out / "training.gif").is_file() and (out / "samples.png").is_file()
    # written whole, not appended to: the same one row as the run that was not interrupted
    assert (out / "fid.csv").read_text() == (tmp_path / "straight" / "fid.csv").read_text()
    assert load_checkpoint(out / "checkpoint.pt", "GAN")["finished"]
    assert "is finished" in error_of(gan_train, monkeypatch, "--resume", str(out / "checkpoint.pt"))


def test_an_image_size_the_networks_cannot_take_is_refused_before_any_decoding(tmp_path,
                                                                               monkeypatch):
    from common import data
    from conftest import write_images
    write_images(tmp_path / "images", 12)

    def decode(*args):
        raise AssertionError("an image was decoded")
    monkeypatch.setattr(data, "decode", decode)
    message = error_of(gan_train, monkeypatch, "--dataset", "folder", "--data-root",
                       str(tmp_path / "images"), "--image-size", "48", "--out", str(tmp_path / "r"))
    assert "image size 48 is not supported" in message


def test_fid_refuses_samples_of_another_size(tmp_path, monkeypatch, mnist_root):
    torch.save(torch.rand(4, 1, 16, 16), tmp_path / "small.pt")
    message = error_of(fid_script, monkeypatch, str(tmp_path / "small.pt"), "--data-root",
                       str(mnist_root))
    assert "holds 16x16 images" in message and "32x32" in message


def test_one_final_fid_sample_is_refused(tmp_path, monkeypatch):
    message = error_of(gan_train, monkeypatch, "--dataset", "fake", "--fid-samples", "1",
                       "--out", str(tmp_path / "r"))
    assert "--fid-samples 0 or >= 2" in message


def test_a_test_set_too_small_for_an_fid_is_one_line_up_front(tmp_path, monkeypatch):
    from conftest import write_images
    write_images(tmp_path / "images" / "a", 6, size=(32, 32))
    write_images(tmp_path / "images" / "b", 4, size=(32, 32), seed=1)  # 10 files: 1 test image
    message = error_of(gan_train, monkeypatch, "--dataset", "folder", "--data-root",
                       str(tmp_path / "images"), "--image-size", "32", "--batch-size", "4",
                       "--width", "8", "--out", str(tmp_path / "run"))
    assert "an FID needs 2 or more" in message and not (tmp_path / "run").exists()
