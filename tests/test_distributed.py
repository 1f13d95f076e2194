"""torchrun with 2 CPU processes (Gloo): every family trains, the processes stay identical, a run
resumes, and the MLP VAE's losses match a single process stepping on the same whole batch."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, read_csv, write_images
from common.data import Batches
from AE import train as ae_train
from GAN import train as gan_train
from VAE import train as vae_train

FAKE = ["--dataset", "fake", "--batch-size", "64"]  # 256 images: 4 steps of 2 x 32 images per epoch
QUICK = ["--embedding", "pca"]  # t-SNE would take most of the time
GAN_FAST = [*FAKE, "--width", "8", "--fid-every", "0", "--fid-samples", "0"]


def torchrun(*command, cwd=ROOT, cache=None):
    """2 CPU processes; cache: the user's cache folder for them (the module's runs start before the
    per-test one is set)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        **({"XDG_CACHE_HOME": str(cache)} if cache else {}),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            *command,
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One torchrun launch (its start-up dominates) that trains every run below in one group."""
    folder = tmp_path_factory.mktemp("distributed")
    for digit in range(
        2
    ):  # a folder of PNGs: rank 0 decodes and caches it first, then rank 1 reads the cache
        write_images(folder / "pngs" / str(digit), 40, size=(32, 32), mode="L", seed=digit)
    plan = {
        "vae": ("VAE", [*FAKE, *QUICK, "--epochs", "2"]),
        "vae-half": ("VAE", [*FAKE, *QUICK, "--epochs", "1"]),
        "vae-resumed": (
            "VAE",
            ["--resume", str(folder / "vae-half" / "checkpoint.pt"), "--epochs", "2"],
        ),
        "ae": ("AE", [*FAKE, *QUICK, "--epochs", "1", "--latent-dim", "4"]),
        "ae-pngs": (
            "AE",
            [
                "--dataset",
                "folder",
                "--data-root",
                str(folder / "pngs"),
                "--image-size",
                "32",
                "--batch-size",
                "32",
                *QUICK,
                "--epochs",
                "1",
                "--latent-dim",
                "4",
            ],
        ),
        "dcgan": ("GAN", [*GAN_FAST, "--epochs", "1"]),
        "wgan-gp": ("GAN", [*GAN_FAST, "--epochs", "1", "--loss", "wgan-gp", "--n-critic", "2"]),
        "infogan": ("GAN", [*GAN_FAST, "--epochs", "1", "--model", "infogan"]),
    }
    # a resumed run writes beside its checkpoint
    runs = [
        (family, flags + ([] if "--resume" in flags else ["--out", str(folder / name)]))
        for name, (family, flags) in plan.items()
    ]
    output = torchrun(
        str(ROOT / "tests" / "distributed_runs.py"), json.dumps(runs), cache=folder / "cache"
    )
    return folder, output, plan


def test_only_rank_0_prints_and_writes(runs):
    folder, output, plan = runs
    assert output.count("done: figures") == len(plan)
    assert "batch 64 = 2 processes x 32" in output
    assert output.count("decoding") == 1  # the PNGs, decoded once by rank 0 alone
    assert not any(path.name.startswith("rank") for path in folder.rglob("*"))


@pytest.mark.parametrize("name", ["vae", "ae", "ae-pngs", "dcgan", "wgan-gp", "infogan"])
def test_every_process_ends_with_the_same_parameters(runs, name):
    folder = runs[0]
    rank_0, rank_1 = (
        torch.load(folder / f"{name}.rank{rank}.pt", weights_only=True) for rank in (0, 1)
    )
    assert rank_0.keys() == rank_1.keys() and len(rank_0) > 0
    for key in rank_0:
        assert torch.equal(rank_0[key], rank_1[key]), key


def test_two_processes_train_as_one_on_the_same_batch(runs, tmp_path):
    """Same images, same noise, gradients averaged: the MLP VAE (no BatchNorm) logs what one
    process logs."""
    folder = runs[0]
    vae_train.train(
        vae_train.make_parser().parse_args(
            [*FAKE, *QUICK, "--epochs", "2", "--out", str(tmp_path / "one")]
        )
    )
    two, one = read_csv(folder / "vae" / "log.csv"), read_csv(tmp_path / "one" / "log.csv")
    assert len(two) == len(one) == 2
    for row_two, row_one in zip(two, one):
        for column in ("train_total", "train_kl", "test_neg_elbo"):
            assert float(row_two[column]) == pytest.approx(float(row_one[column]), rel=1e-5), column


@pytest.mark.parametrize("name, script", [("ae", ae_train), ("dcgan", gan_train)])
def test_batchnorm_models_stay_close_to_one_process(runs, tmp_path, name, script):
    """With BatchNorm each process normalises over its own 32 images, so these only come close."""
    folder, _, plan = runs
    flags = plan[name][1]
    script.train(script.make_parser().parse_args([*flags, "--out", str(tmp_path / "one")]))
    two, one = read_csv(folder / name / "log.csv")[0], read_csv(tmp_path / "one" / "log.csv")[0]
    column = "train_total" if name == "ae" else "d_loss"
    assert float(two[column]) == pytest.approx(float(one[column]), rel=0.02)


def test_a_two_process_run_resumes_exactly(runs):
    folder = runs[0]
    uninterrupted, resumed = (
        read_csv(folder / "vae" / "log.csv"),
        read_csv(folder / "vae-half" / "log.csv"),
    )
    assert [row["test_neg_elbo"] for row in resumed] == [
        row["test_neg_elbo"] for row in uninterrupted
    ]
    assert [row["train_total"] for row in resumed] == [row["train_total"] for row in uninterrupted]


def test_the_readme_command_under_torchrun_from_another_folder(tmp_path):
    output = torchrun(
        str(ROOT / "VAE" / "train.py"),
        *FAKE,
        *QUICK,
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert output.count("done: figures") == 1 and (tmp_path / "run" / "checkpoint.pt").is_file()


def test_each_process_takes_its_own_rows_of_one_shuffled_batch():
    images = torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1)
    whole = [x.flatten().tolist() for x, _ in Batches(images, None, 4, seed=3)]
    parts = [
        [x.flatten().tolist() for x, _ in Batches(images, None, 4, seed=3, rank=rank, world_size=2)]
        for rank in (0, 1)
    ]
    assert [a + b for a, b in zip(*parts)] == whole
    noise = torch.arange(4)
    assert Batches(images, None, 4, rank=1, world_size=2).shard(noise).tolist() == [2, 3]


def test_a_batch_that_does_not_split_over_the_processes_is_refused():
    with pytest.raises(Exception, match="does not split evenly over 2 processes"):
        Batches(torch.zeros(8, 1, 1, 1, dtype=torch.uint8), None, 3, world_size=2)
