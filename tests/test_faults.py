"""Bad input and faults: every case ends in one clear line (or a warning), writes nothing it should
not, and leaves log.csv and the checkpoint agreeing."""

import argparse
import errno

import pytest
import torch

from common import InputError, data, files, run
from conftest import read_csv, write_images
from AE import train as ae_train
from GAN import evaluate as gan_evaluate
from GAN import model as gan_model
from GAN import train as gan_train
from VAE import model as vae_model
from VAE import sample as vae_sample
from VAE import train as vae_train
from test_vae_train import error_of, interrupt_after_the_first_epoch, run_main

FAST = {
    vae_train: ["--embedding", "pca"],
    ae_train: ["--embedding", "pca"],
    gan_train: ["--width", "8", "--batch-size", "32", "--fid-every", "0", "--fid-samples", "0"],
}


def vae_run(monkeypatch, out, *flags):
    run_main(
        vae_train, monkeypatch, "--dataset", "fake", "--out", str(out), "--embedding", "pca", *flags
    )


# ---- flags: every numeric flag checked in one place, before any data is loaded or anything is
# written ----


@pytest.mark.parametrize("module", [vae_train, ae_train, gan_train])
@pytest.mark.parametrize(
    "flag, value",
    [
        ("--epochs", "0"),
        ("--epochs", "-1"),
        ("--batch-size", "0"),
        ("--batch-size", "-5"),
        ("--lr", "-1"),
        ("--lr", "0"),
        ("--lr", "nan"),
        ("--latent-dim", "0"),
        ("--image-size", "0"),
    ],
)
def test_out_of_range_flags_end_in_one_line_before_anything_happens(
    module, flag, value, tmp_path, monkeypatch
):
    # The data root does not exist: had the data been looked for first, the error would be about
    # the data.
    message = error_of(
        module,
        monkeypatch,
        "--data-root",
        str(tmp_path / "no-data"),
        "--out",
        str(tmp_path / "out"),
        flag,
        value,
    )
    assert f"{flag} must be > 0, not" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "flag, value, rule",
    [
        ("--n-critic", "0", "> 0"),
        ("--ema", "-0.1", ">= 0"),
        ("--fid-every", "-1", ">= 0"),
        ("--width", "0", "> 0"),
        ("--g-lr", "0", "> 0"),
    ],
)
def test_gan_flags_are_range_checked_too(flag, value, rule, tmp_path, monkeypatch):
    message = error_of(
        gan_train, monkeypatch, "--dataset", "fake", "--out", str(tmp_path / "out"), flag, value
    )
    assert f"{flag} must be {rule}, not" in message and not (tmp_path / "out").exists()


def test_an_out_folder_that_cannot_be_written(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    message = error_of(
        vae_train, monkeypatch, "--dataset", "fake", "--out", str(tmp_path / "a-file" / "run")
    )
    assert "cannot be written" in message and "not a folder" in message


def test_resuming_a_finished_run_says_there_is_nothing_left(tmp_path, monkeypatch):
    vae_run(monkeypatch, tmp_path / "run", "--epochs", "2")
    checkpoint = str(tmp_path / "run" / "checkpoint.pt")
    for flags in ([], ["--epochs", "2"]):
        message = error_of(vae_train, monkeypatch, "--resume", checkpoint, *flags)
        assert "has trained 2 epochs and its run is finished" in message
    message = error_of(vae_train, monkeypatch, "--resume", checkpoint, "--epochs", "1")
    assert "has trained 2 epochs, more than --epochs 1" in message


# ---- data ----


def test_a_failed_download_leaves_no_folder_behind(tmp_path, monkeypatch):
    def failing_download(root, download=True, **options):
        (root / "MNIST" / "raw").mkdir(parents=True)
        (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz.part").write_bytes(b"half")
        raise ConnectionError("no network")

    monkeypatch.setattr(data.torchvision.datasets, "MNIST", failing_download)
    # a data root that did not exist: it is not left behind, nor is the run folder
    message = error_of(
        vae_train,
        monkeypatch,
        "--data-root",
        str(tmp_path / "new" / "data"),
        "--out",
        str(tmp_path / "out"),
    )
    assert "download failed (ConnectionError)" in message
    assert list(tmp_path.iterdir()) == []
    # a data root that existed: it stays, without the folders the attempt made
    (tmp_path / "data" / "other").mkdir(parents=True)
    error_of(
        vae_train,
        monkeypatch,
        "--data-root",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
    )
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["other"] and not (
        tmp_path / "out"
    ).exists()


def test_images_both_at_the_top_and_in_class_folders_are_refused(tmp_path):
    write_images(tmp_path / "cat", 3, size=(8, 8))
    write_images(tmp_path, 2, size=(8, 8), seed=1)
    with pytest.raises(InputError, match="both at its top level .* and in class sub-folders"):
        data.load_dataset("folder", tmp_path, image_size=8)


def test_a_decoded_cache_that_cannot_be_written_is_a_note(tmp_path, capsys):
    write_images(tmp_path / "images", 10, size=(8, 8))
    blocked = data.cache_folder(tmp_path / "images")
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the cache folder would go")
    images, _ = data.load_dataset("folder", tmp_path / "images", image_size=8)
    assert images.shape == (9, 3, 8, 8)
    assert "note: could not cache the decoded images" in capsys.readouterr().out


def test_the_fid_classifier_is_never_read_back_as_a_class(tmp_path):
    for name, seed in [("cat", 0), ("dog", 1)]:
        write_images(tmp_path / "pets" / name, 18, size=(32, 32), seed=seed)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "pets").rglob("*"))
    root = tmp_path / "pets"
    gan_evaluate.load_classifier(
        "folder",
        root,
        data.load_dataset("folder", root, 32),
        data.load_dataset("folder", root, 32, train=False),
        epochs=1,
    )
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "pets").rglob("*")) == before
    _, labels = data.load_dataset("folder", tmp_path / "pets", 32)
    assert labels.max().item() == 1  # still two classes


# ---- faults during a run ----


def test_a_crash_between_checkpoint_and_log_is_repaired_on_resume(tmp_path, monkeypatch):
    vae_run(monkeypatch, tmp_path / "run", "--epochs", "1")
    real_write_csv = run.write_csv

    def crash(path, rows):
        if len(rows) == 2:  # after epoch 2's checkpoint (resuming rewrote the 1-row log first)
            raise RuntimeError("the machine died here")
        real_write_csv(path, rows)

    monkeypatch.setattr(run, "write_csv", crash)
    with pytest.raises(
        RuntimeError, match="died"
    ):  # epoch 2's checkpoint is written, its log row is not
        run_main(
            vae_train,
            monkeypatch,
            "--resume",
            str(tmp_path / "run" / "checkpoint.pt"),
            "--epochs",
            "3",
        )
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 2
    assert [row["epoch"] for row in read_csv(tmp_path / "run" / "log.csv")] == [
        "1"
    ]  # never ahead of the checkpoint
    monkeypatch.setattr(run, "write_csv", real_write_csv)
    run_main(
        vae_train, monkeypatch, "--resume", str(tmp_path / "run" / "checkpoint.pt"), "--epochs", "3"
    )
    assert [row["epoch"] for row in read_csv(tmp_path / "run" / "log.csv")] == ["1", "2", "3"]


def test_a_failed_checkpoint_write_removes_its_partial_file(tmp_path, monkeypatch):
    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    message = error_of(
        vae_train, monkeypatch, "--dataset", "fake", "--epochs", "1", "--out", str(tmp_path / "run")
    )
    assert "No space left on device" in message and "nothing to resume" in message
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_nan_in_the_first_epoch_says_no_checkpoint_exists(tmp_path, monkeypatch):
    real_loss = vae_model.VAE.loss
    monkeypatch.setattr(
        vae_model.VAE,
        "loss",
        lambda self, x, noise=None: {
            **real_loss(self, x, noise),
            "total": real_loss(self, x, noise)["total"] * float("nan"),
        },
    )
    message = error_of(
        vae_train, monkeypatch, "--dataset", "fake", "--epochs", "1", "--out", str(tmp_path / "run")
    )
    assert "no checkpoint was written" in message and "kept" not in message


def test_a_nan_test_figure_is_never_checkpointed(tmp_path, monkeypatch):
    vae_run(monkeypatch, tmp_path / "run", "--epochs", "1")
    good = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    monkeypatch.setattr(
        vae_train,
        "evaluate",
        lambda *args: {"recon": float("nan"), "kl": 1.0, "neg_elbo": float("nan")},
    )
    message = error_of(
        vae_train, monkeypatch, "--resume", str(tmp_path / "run" / "checkpoint.pt"), "--epochs", "2"
    )
    assert "test neg_elbo" in message and "(epoch 1) is kept" in message
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == good


def test_a_collapsed_gan_finishes_with_a_warning(tmp_path, monkeypatch, capsys):
    real_loss = gan_model.GAN.discriminator_loss

    def rejecting_everything(self, *args):
        parts = real_loss(self, *args)
        return {**parts, "d_fake": parts["d_fake"] * 0, "total": parts["total"] + 1e15}

    monkeypatch.setattr(gan_model.GAN, "discriminator_loss", rejecting_everything)
    run_main(
        gan_train,
        monkeypatch,
        "--dataset",
        "fake",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
        *FAST[gan_train],
    )
    printed = capsys.readouterr().out
    assert (
        "warning: epoch 1: the losses are diverging" in printed
        and "diverged or collapsed in epoch(s) [1]" in printed
    )


def test_diagnose_names_divergence_and_collapse():
    assert gan_train.diagnose({"d_loss": 1.2, "g_loss": 0.9, "d_fake": 0.4}, "gan") is None
    assert "diverging" in gan_train.diagnose({"d_loss": 3e15, "g_loss": 0.9, "d_fake": 0.4}, "gan")
    assert "collapsed" in gan_train.diagnose({"d_loss": 0.01, "g_loss": 9.0, "d_fake": 1e-5}, "gan")
    assert (
        gan_train.diagnose({"d_loss": -0.5, "g_loss": 0.1, "d_fake": -3e-4}, "wgan") is None
    )  # a critic value, not a probability


@pytest.mark.parametrize("module", [vae_train, ae_train, gan_train])
def test_ctrl_c_ends_in_one_line_naming_the_checkpoint(module, tmp_path, monkeypatch):
    flags = ["--dataset", "fake", "--out", str(tmp_path / "run"), *FAST[module]]
    interrupt_after_the_first_epoch(monkeypatch)
    with pytest.raises(SystemExit) as stop:
        run_main(module, monkeypatch, *flags, "--epochs", "3")
    assert str(stop.value.code) == (
        f"interrupted: {tmp_path / 'run' / 'checkpoint.pt'} holds epoch 1; "
        f"continue with --resume {tmp_path / 'run' / 'checkpoint.pt'}"
    )


def test_ctrl_c_before_the_first_checkpoint(tmp_path, monkeypatch):
    def interrupt(self, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(vae_model.VAE, "loss", interrupt)
    with pytest.raises(SystemExit) as stop:
        vae_run(monkeypatch, tmp_path / "run", "--epochs", "1")
    assert "there is nothing to resume" in str(stop.value.code)


# ---- words ----


def test_a_file_of_other_objects_and_a_folder_are_named_for_what_they_are(tmp_path, monkeypatch):
    torch.save(argparse.Namespace(epochs=3), tmp_path / "objects.pt")
    assert "holds Python objects that a checkpoint may not contain" in error_of(
        vae_sample, monkeypatch, str(tmp_path / "objects.pt")
    )
    assert "is a folder" in error_of(vae_sample, monkeypatch, str(tmp_path))
