"""The run around the loop (common/run.py, common/files.py): every file whole or absent, one run
per folder, a resume that continues the run as it was started, an end of run that can be finished,
and one line, never a traceback, for a full disk or a stop signal."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from common import files, run
from conftest import ROOT, full_disk_for, read_csv
from test_vae_train import error_of, interrupt_after_the_first_epoch, run_main
from VAE import sample as vae_sample
from VAE import train as vae_train

FAKE = ["--dataset", "fake", "--embedding", "pca", "--device", "cpu"]


def vae_run(monkeypatch, out, *flags):
    run_main(vae_train, monkeypatch, *FAKE, "--out", str(out), *flags)


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*.tmp"))


# ---- every file whole or absent ----


def test_a_full_disk_keeps_the_file_that_was_there(tmp_path, monkeypatch):
    good = tmp_path / "samples.pt"
    files.save_tensors(torch.ones(3), good)
    full_disk_for(monkeypatch, ".pt")
    with pytest.raises(
        files.WriteError, match="could not write .*samples.pt: No space left on device"
    ):
        files.save_tensors(torch.zeros(3), good)
    assert torch.equal(torch.load(good, weights_only=True), torch.ones(3)) and not leftovers(
        tmp_path
    )


@pytest.mark.parametrize("suffix", [".pt", ".png"])
def test_sampling_over_a_good_file_on_a_full_disk(suffix, tmp_path, monkeypatch):
    vae_run(monkeypatch, tmp_path / "run", "--epochs", "1")
    checkpoint, out = str(tmp_path / "run" / "checkpoint.pt"), tmp_path / f"samples{suffix}"
    run_main(vae_sample, monkeypatch, checkpoint, "--num", "4", "--out", str(out))
    before = out.read_bytes()
    full_disk_for(monkeypatch, suffix)
    message = error_of(
        vae_sample, monkeypatch, checkpoint, "--num", "4", "--seed", "1", "--out", str(out)
    )
    assert "No space left on device" in message
    assert out.read_bytes() == before and not leftovers(tmp_path)


def test_sampling_without_out_writes_beside_the_checkpoint(tmp_path, monkeypatch):
    vae_run(monkeypatch, tmp_path / "run", "--epochs", "1")
    monkeypatch.chdir(tmp_path)
    run_main(vae_sample, monkeypatch, str(tmp_path / "run" / "checkpoint.pt"), "--num", "4")
    assert (tmp_path / "run" / "samples-seed0-4.png").is_file() and not (
        tmp_path / "samples.png"
    ).exists()


@pytest.mark.parametrize(
    "suffix, when",
    [(".png", "a picture of epoch 1"), (".pt", "the checkpoint"), (".gif", "the end of the run")],
)
def test_a_full_disk_during_a_run_is_one_line_that_names_what_to_do(
    suffix, when, tmp_path, monkeypatch
):
    disk_freed = full_disk_for(monkeypatch, suffix)
    message = error_of(
        vae_train, monkeypatch, *FAKE, "--epochs", "1", "--out", str(tmp_path / "run")
    )
    assert "No space left on device" in message, when
    assert "iostream" not in message and "inline_container" not in message
    assert not leftovers(tmp_path)
    if suffix == ".gif":  # the epoch is on disk: free some space and resume, which finishes the end
        assert "free some space, then continue with --resume" in message
        disk_freed()
        run_main(vae_train, monkeypatch, "--resume", str(tmp_path / "run" / "checkpoint.pt"))
        assert (tmp_path / "run" / "training.gif").is_file()


def test_the_log_rewrite_on_resume_leaves_no_partial_file(tmp_path, monkeypatch):
    vae_run(monkeypatch, tmp_path / "run", "--epochs", "1")
    full_disk_for(monkeypatch, ".csv")
    message = error_of(
        vae_train, monkeypatch, "--resume", str(tmp_path / "run" / "checkpoint.pt"), "--epochs", "2"
    )
    assert "log.csv: No space left on device" in message and not leftovers(tmp_path)
    assert [row["epoch"] for row in read_csv(tmp_path / "run" / "log.csv")] == ["1"]


# ---- one run per folder ----


def test_a_folder_in_use_by_a_live_run_is_refused_and_a_dead_runs_claim_is_not(
    tmp_path, monkeypatch
):
    out = tmp_path / "run"
    out.mkdir()
    holder = (
        "import fcntl, sys, time; lock = open(sys.argv[1], 'a'); "
        "fcntl.flock(lock, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
    )
    other_run = subprocess.Popen(
        [sys.executable, "-c", holder, str(out / "run.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other_run.stdout.readline().strip() == "held"
        message = error_of(vae_train, monkeypatch, *FAKE, "--epochs", "1", "--out", str(out))
        assert "in use by a running run" in message
        assert not (out / "checkpoint.pt").exists()
    finally:
        other_run.kill()
        other_run.wait()
    vae_run(monkeypatch, out, "--epochs", "1")  # its process is gone, and so is its claim
    assert (out / "checkpoint.pt").is_file()


def test_two_runs_started_together_on_one_folder(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        str(ROOT / "VAE" / "train.py"),
        *FAKE,
        "--epochs",
        "4",
        "--out",
        str(out),
    ]
    runs = [
        subprocess.Popen(
            [*command, "--seed", seed], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for seed in ("0", "1")
    ]
    results = [(process.wait(timeout=120), process.stderr.read()) for process in runs]
    assert sorted(code for code, _ in results) == [0, 1]
    refused = next(error for code, error in results if code == 1)
    assert "in use by a running run" in refused or "already holds a run" in refused
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 4


# ---- resume continues the run as it was started ----


def test_resume_without_epochs_trains_to_the_runs_own_end(tmp_path, monkeypatch):
    real_write_csv = interrupt_after_the_first_epoch(monkeypatch)
    with pytest.raises(SystemExit, match="holds epoch 1; continue with --resume"):
        vae_run(monkeypatch, tmp_path / "run", "--epochs", "3")
    monkeypatch.setattr(run, "write_csv", real_write_csv)
    run_main(vae_train, monkeypatch, "--resume", str(tmp_path / "run" / "checkpoint.pt"))
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 3


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--lr", "0.5"], "--lr 0.5"),
        (["--latent-dim", "8", "--batch-size", "32"], "--batch-size 32"),
        (["--arch", "conv"], "--arch conv"),
        (["--dataset", "mnist"], "--dataset mnist"),
    ],
)
def test_resume_refuses_flags_that_would_change_the_run(flags, named, tmp_path, monkeypatch):
    vae_run(monkeypatch, tmp_path / "run", "--epochs", "1")
    message = error_of(
        vae_train,
        monkeypatch,
        "--resume",
        str(tmp_path / "run" / "checkpoint.pt"),
        "--epochs",
        "2",
        *flags,
    )
    assert named in message and "continues the run as it was started" in message


def test_resume_accepts_what_may_change_and_what_does_not_change_it(tmp_path, monkeypatch):
    vae_run(monkeypatch, tmp_path / "run", "--epochs", "1")
    checkpoint = str(tmp_path / "run" / "checkpoint.pt")
    message = error_of(
        vae_train, monkeypatch, "--resume", checkpoint, "--out", str(tmp_path / "else")
    )
    assert "--out" in message
    run_main(
        vae_train,
        monkeypatch,
        "--resume",
        checkpoint,
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--dataset",
        "fake",
        "--out",
        str(tmp_path / "run"),
    )
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 2


def test_a_moved_data_folder_is_given_again_on_resume(mnist_root, tmp_path, monkeypatch):
    flags = ["--data-root", str(mnist_root), "--embedding", "pca", "--batch-size", "10"]
    real_write_csv = interrupt_after_the_first_epoch(monkeypatch)
    with pytest.raises(SystemExit):
        run_main(vae_train, monkeypatch, *flags, "--epochs", "2", "--out", str(tmp_path / "run"))
    monkeypatch.setattr(run, "write_csv", real_write_csv)
    moved = tmp_path / "moved-data"
    shutil.move(mnist_root / "MNIST", moved / "MNIST")
    run_main(
        vae_train,
        monkeypatch,
        "--resume",
        str(tmp_path / "run" / "checkpoint.pt"),
        "--data-root",
        str(moved),
    )
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 2


# ---- the end of a run is part of the run ----


def test_a_run_stopped_during_its_end_finishes_on_resume(tmp_path, monkeypatch):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    real_gif = vae_train.save_training_gif
    monkeypatch.setattr(vae_train, "save_training_gif", stop)
    with pytest.raises(SystemExit, match="holds epoch 2; continue with --resume"):
        vae_run(monkeypatch, tmp_path / "run", "--epochs", "2")
    assert not (tmp_path / "run" / "training.gif").exists()
    monkeypatch.setattr(vae_train, "save_training_gif", real_gif)
    checkpoint = str(tmp_path / "run" / "checkpoint.pt")
    run_main(vae_train, monkeypatch, "--resume", checkpoint)
    assert (tmp_path / "run" / "training.gif").is_file()
    assert [row["epoch"] for row in read_csv(tmp_path / "run" / "log.csv")] == ["1", "2"]
    assert "run is finished" in error_of(vae_train, monkeypatch, "--resume", checkpoint)
    run_main(vae_train, monkeypatch, "--resume", checkpoint, "--epochs", "3")  # a longer run
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 3


# ---- signals ----


@pytest.mark.skipif(
    not hasattr(signal, "SIGTERM") or sys.platform == "win32", reason="POSIX signals"
)
def test_sigterm_stops_like_ctrl_c(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "VAE" / "train.py"),
            *FAKE,
            "--epochs",
            "100000",
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 90
    while not (out / "log.csv").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    error = process.communicate(timeout=60)[1]
    assert process.returncode == 1
    assert error.strip().count("\n") == 0 and error.startswith("stopped by SIGTERM: ")
    assert "continue with --resume" in error and not leftovers(out)


# ---- the edges of the above ----


def test_a_stopped_resumed_run_names_its_checkpoint(tmp_path, monkeypatch):
    vae_run(monkeypatch, tmp_path / "run", "--epochs", "1")
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    interrupt_after_the_first_epoch(monkeypatch)
    with pytest.raises(SystemExit) as stop:
        run_main(vae_train, monkeypatch, "--resume", str(checkpoint), "--epochs", "3")
    assert str(stop.value.code) == (
        f"interrupted: {checkpoint} holds epoch 1; continue with --resume {checkpoint}"
    )


def test_a_signal_that_was_ignored_stays_ignored(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    seen = {}
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts a run
    try:
        run.run_training(
            lambda args: seen.update(
                hup=signal.getsignal(signal.SIGHUP), term=signal.getsignal(signal.SIGTERM)
            ),
            run.FlagParser(),
        )
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert seen == {"hup": signal.SIG_IGN, "term": run.stop_on_signal}


def test_two_writers_of_one_file_never_share_a_temporary_file(tmp_path, monkeypatch):
    sources = []
    real_replace = os.replace
    monkeypatch.setattr(files.os, "replace", lambda a, b: (sources.append(a), real_replace(a, b)))
    files.write_atomically(tmp_path / "cache.pt", b"one")
    files.write_atomically(tmp_path / "cache.pt", b"two")
    assert sources[0] != sources[1] and (tmp_path / "cache.pt").read_bytes() == b"two"


def test_a_run_that_ended_while_another_started_on_its_folder_is_not_overwritten(
    tmp_path, monkeypatch
):
    vae_run(monkeypatch, tmp_path / "done", "--epochs", "1")
    real_load = vae_train.load_dataset

    def load_while_a_run_finishes(*args, **kwargs):
        shutil.copytree(tmp_path / "done", tmp_path / "run", dirs_exist_ok=True)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(vae_train, "load_dataset", load_while_a_run_finishes)
    message = error_of(
        vae_train, monkeypatch, *FAKE, "--epochs", "1", "--out", str(tmp_path / "run")
    )
    assert "changed while this run started" in message


def test_resume_edges(tmp_path, monkeypatch):
    real_write_csv = interrupt_after_the_first_epoch(monkeypatch)
    with pytest.raises(SystemExit):
        vae_run(monkeypatch, tmp_path / "run", "--epochs", "3", "--lr-schedule", "cosine")
    monkeypatch.setattr(run, "write_csv", real_write_csv)
    checkpoint = str(tmp_path / "run" / "checkpoint.pt")
    assert "more than --epochs 0" not in error_of(
        vae_train, monkeypatch, "--resume", checkpoint, "--epochs", "1", "--embedding", "tsne"
    )
    # a cosine schedule is drawn over the run's length: that length may not change
    assert "--epochs 5 would change it" in error_of(
        vae_train, monkeypatch, "--resume", checkpoint, "--epochs", "5"
    )
    # what is only measured may change: here the picture of the codes
    run_main(vae_train, monkeypatch, "--resume", checkpoint, "--embedding", "pca")
    assert (tmp_path / "run" / "latent_pca.png").is_file()


def test_a_read_only_folder_is_not_called_a_full_disk(tmp_path, monkeypatch):
    def refused(descriptor):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files.os, "fsync", refused)
    message = error_of(
        vae_train, monkeypatch, *FAKE, "--epochs", "1", "--out", str(tmp_path / "run")
    )
    assert "Permission denied" in message and "free some space" not in message


# ---- cases found by trying to break the above ----


def test_sampling_never_replaces_a_checkpoint(tmp_path, monkeypatch):
    vae_run(monkeypatch, tmp_path / "run", "--epochs", "1")
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    before = checkpoint.read_bytes()
    message = error_of(vae_sample, monkeypatch, str(checkpoint), "--out", str(checkpoint))
    assert "would replace a checkpoint" in message and checkpoint.read_bytes() == before


def test_a_new_tensor_of_samples_drops_the_codes_of_an_earlier_one(tmp_path):
    from common.pictures import write_samples

    files.save_tensors(torch.zeros(4, dtype=torch.int64), tmp_path / "s.labels.pt")
    write_samples(torch.rand(4, 1, 8, 8), tmp_path / "s.pt")
    assert not (tmp_path / "s.labels.pt").exists()


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_a_seed_numpy_cannot_take_is_one_line(seed, tmp_path, monkeypatch):
    message = error_of(vae_train, monkeypatch, *FAKE, "--seed", seed, "--out", str(tmp_path / "r"))
    assert "--seed must lie in 0 .. 2^32 - 1" in message


def test_an_out_inside_the_data_folder_is_refused(tmp_path, monkeypatch):
    from conftest import write_images

    write_images(tmp_path / "images", 12, size=(32, 32))
    message = error_of(
        vae_train,
        monkeypatch,
        "--dataset",
        "folder",
        "--data-root",
        str(tmp_path / "images"),
        "--out",
        str(tmp_path / "images" / "run"),
    )
    assert "inside the data folder" in message
    assert sorted(p.name for p in (tmp_path / "images").iterdir() if p.is_dir()) == []


def test_a_checkpoint_copied_under_another_name_resumes(tmp_path, monkeypatch):
    vae_run(monkeypatch, tmp_path / "run", "--epochs", "1")
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "run" / "checkpoint.pt", tmp_path / "copy" / "saved.pt")
    saved = str(tmp_path / "copy" / "saved.pt")
    real_write_csv = interrupt_after_the_first_epoch(monkeypatch)
    with pytest.raises(SystemExit, match="saved.pt holds epoch 1; continue with --resume"):
        run_main(vae_train, monkeypatch, "--resume", saved, "--epochs", "2")
    monkeypatch.setattr(run, "write_csv", real_write_csv)
    run_main(vae_train, monkeypatch, "--resume", saved, "--epochs", "2")
    assert torch.load(tmp_path / "copy" / "checkpoint.pt", weights_only=True)["epoch"] == 2
    # the folder now holds the run's own checkpoint.pt: the old copy may not overwrite it
    assert "already holds a run" in error_of(vae_train, monkeypatch, "--resume", saved, "--epochs",
                                             "3")


def test_a_killed_writers_partial_file_is_cleared_by_the_next_run_on_the_folder(
    tmp_path, monkeypatch
):
    vae_run(monkeypatch, tmp_path / "run", "--epochs", "1")
    (tmp_path / "run" / "checkpoint.0badf00d.pt.tmp").write_bytes(b"half")
    run_main(
        vae_train, monkeypatch, "--resume", str(tmp_path / "run" / "checkpoint.pt"), "--epochs", "2"
    )
    assert not leftovers(tmp_path)


def test_ctrl_c_in_a_sample_script_is_one_line(tmp_path, monkeypatch):
    vae_run(monkeypatch, tmp_path / "run", "--epochs", "1")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vae_sample, "write_samples", interrupt)
    with pytest.raises(SystemExit) as stop:
        run_main(vae_sample, monkeypatch, str(tmp_path / "run" / "checkpoint.pt"))
    assert str(stop.value.code).startswith("interrupted: ")


def test_a_broken_link_in_a_folder_is_one_line(tmp_path):
    from common import InputError
    from common.data import load_dataset
    from conftest import write_images

    write_images(tmp_path / "images", 12, size=(8, 8))
    (tmp_path / "images" / "zz.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(InputError, match="cannot read image .*zz.png"):
        load_dataset("folder", tmp_path / "images", 8)


def test_a_damaged_cifar_batch_is_one_line(cifar_root):
    from common import InputError
    from common.data import load_dataset

    (cifar_root / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"\x80\x04 truncated")
    with pytest.raises(InputError, match="data_batch_2 is damaged"):
        load_dataset("cifar10", cifar_root, train=True)
