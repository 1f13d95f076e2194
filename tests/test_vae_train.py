"""VAE/train.py (and VAE/report.py), VAE/evaluate.py and VAE/sample.py end to end: the command line,
resume, and every bad input."""
import subprocess
import sys

import pytest
import torch

from common import run
from common.data import load_dataset
from conftest import ROOT, read_csv
from common.run import load_trained_model, lr_factor
from VAE import evaluate as vae_evaluate
from VAE import report as vae_report
from VAE import model as vae_model
from VAE import sample as vae_sample
from VAE import train as vae_train


def run_main(module, monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", [module.__file__, *argv])
    module.main()


def interrupt_after_the_first_epoch(monkeypatch):
    """Makes the next run stop as if by Ctrl-C right after epoch 1 is on disk (checkpoint, then
    log.csv). Returns the real log writer, to put back before a run that should finish."""
    real_write_csv = run.write_csv

    def write_then_interrupt(path, rows):
        real_write_csv(path, rows)
        raise KeyboardInterrupt
    monkeypatch.setattr(run, "write_csv", write_then_interrupt)
    return real_write_csv


def straight_and_resumed(module, monkeypatch, tmp_path, *argv):
    """Trains `argv` (two epochs) once straight through and once stopped after epoch 1 and resumed;
    returns both final checkpoints, (straight, resumed), for a test to compare."""
    run_main(module, monkeypatch, *argv, "--out", str(tmp_path / "straight"))
    real_write_csv = interrupt_after_the_first_epoch(monkeypatch)
    with pytest.raises(SystemExit):
        run_main(module, monkeypatch, *argv, "--out", str(tmp_path / "resumed"))
    monkeypatch.setattr(run, "write_csv", real_write_csv)
    run_main(module, monkeypatch, "--resume", str(tmp_path / "resumed" / "checkpoint.pt"))
    return tuple(torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)
                 for name in ("straight", "resumed"))


def error_of(module, monkeypatch, *argv):
    """The one-line message a bad input ends with (sys.exit's argument)."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(module, monkeypatch, *argv)
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message
    return message


def test_command_line_smoke_run_from_another_directory(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, str(ROOT / "VAE" / "train.py"), "--dataset", "fake",
                             "--epochs", "1", "--arch", "conv", "--latent-dim", "2",
                             "--out", str(out), "--device", "cpu"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "test -ELBO" in result.stdout
    for name in ["log.csv", "checkpoint.pt", "reconstructions.png", "frames/samples_001.png",
                 "samples.png", "training.gif", "loss_curves.png", "interpolation.png",
                 "traversal.png", "posterior_samples.png", "latent_2d.png", "manifold.png"]:
        assert (out / name).is_file(), name
    assert not (ROOT / "VAE" / "results" / "fake-conv-z2").exists()


def test_help_fits_on_one_screen(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert len(vae_train.make_parser().format_help().splitlines()) <= 60


def test_gaussian_conv_vae_on_a_small_rgb_folder(monkeypatch, tmp_path):
    from conftest import write_images
    write_images(tmp_path / "images" / "a", 20, seed=1)
    write_images(tmp_path / "images" / "b", 20, seed=2)  # 36 training and 4 test images, 64x64 RGB
    run_main(vae_train, monkeypatch, "--dataset", "folder", "--data-root", str(tmp_path / "images"),
             "--arch", "conv", "--likelihood", "gaussian", "--epochs", "1", "--batch-size", "8",
             "--embedding", "pca", "--out", str(tmp_path / "run"))
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["model_config"]["image_shape"] == [3, 64, 64]
    assert "log_sigma" in checkpoint["model"]
    assert (tmp_path / "run" / "latent_pca.png").is_file()
    assert (tmp_path / "run" / "interpolation.png").is_file()


def test_default_output_folder_is_under_the_family_results(monkeypatch, tmp_path):
    monkeypatch.setattr(vae_train, "HERE", tmp_path / "VAE")
    run_main(vae_train, monkeypatch, "--dataset", "fake", "--epochs", "1", "--embedding", "pca")
    assert (tmp_path / "VAE" / "results" / "fake-mlp-z20" / "latent_pca.png").is_file()


def test_the_run_name_says_what_differs_from_the_defaults():
    def name(*flags):
        return vae_train.run_name(vae_train.make_parser().parse_args(["--dataset", "fake", *flags]))
    assert name() == "fake-mlp-z20"
    assert name("--width", "8", "--decoder-depth", "3") == "fake-mlp-z20"  # conv settings only
    every_suffix = name("--arch", "conv", "--width", "8", "--decoder-depth", "3", "--binarize",
                        "--lr-schedule", "cosine", "--validation")
    assert every_suffix == "fake-conv-z20-w8-d3-binarized-cosine-val"


def test_resume_continues_bit_identically(tmp_path, monkeypatch):
    common = ["--dataset", "fake", "--arch", "conv", "--latent-dim", "4", "--batch-size", "32",
              "--binarize", "--device", "cpu", "--embedding", "pca"]
    run_main(vae_train, monkeypatch, *common, "--epochs", "3", "--out", str(tmp_path / "straight"))
    run_main(vae_train, monkeypatch, *common, "--epochs", "1", "--out", str(tmp_path / "split"))
    run_main(vae_train, monkeypatch, "--resume", str(tmp_path / "split" / "checkpoint.pt"),
             "--epochs", "3")
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert straight["epoch"] == split["epoch"] == 3
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, split["model"][name]), name
    rows = {name: [row.split(",")[:7] for row in (tmp_path / name / "log.csv").read_text().split()]
            for name in ("straight", "split")}
    assert len(rows["straight"]) == 4  # a header and three epochs
    assert rows["straight"] == rows["split"]  # the same losses, epoch by epoch (time columns aside)


def test_sample_writes_a_grid_and_a_tensor(tmp_path, monkeypatch):
    run_main(vae_train, monkeypatch, "--dataset", "fake", "--epochs", "1", "--out", str(tmp_path),
             "--embedding", "pca")
    checkpoint = str(tmp_path / "checkpoint.pt")
    run_main(vae_sample, monkeypatch, checkpoint, "--num", "10", "--out", str(tmp_path / "s.pt"))
    images = torch.load(tmp_path / "s.pt", weights_only=True)
    assert images.shape == (10, 1, 32, 32) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    run_main(vae_sample, monkeypatch, checkpoint, "--num", "5", "--out", str(tmp_path / "s.png"))
    assert (tmp_path / "s.png").is_file()
    assert "must end in .png" in error_of(vae_sample, monkeypatch, checkpoint, "--out", "s.jpg")


def test_unknown_dataset(monkeypatch, tmp_path):
    message = error_of(vae_train, monkeypatch, "--dataset", "svhn", "--out", str(tmp_path))
    assert "unknown dataset 'svhn'" in message


def test_missing_data(monkeypatch, tmp_path):
    def failing_download(*args, **kwargs):
        raise RuntimeError("no network")
    monkeypatch.setattr(vae_train.load_dataset.__globals__["torchvision"].datasets, "MNIST",
                        failing_download)
    message = error_of(vae_train, monkeypatch, "--data-root", str(tmp_path / "empty"),
                       "--out", str(tmp_path / "run"))
    assert "mnist data not found" in message and "MNIST/raw" in message


def test_image_size_the_model_cannot_take(monkeypatch, tmp_path):
    message = error_of(vae_train, monkeypatch, "--dataset", "fake", "--arch", "conv",
                       "--image-size", "48", "--out", str(tmp_path))
    assert "image size 48 is not supported" in message


def test_an_existing_run_is_not_overwritten(monkeypatch, tmp_path):
    run_main(vae_train, monkeypatch, "--dataset", "fake", "--epochs", "1", "--out", str(tmp_path),
             "--embedding", "pca")
    before = (tmp_path / "checkpoint.pt").read_bytes()
    message = error_of(vae_train, monkeypatch, "--dataset", "fake", "--out", str(tmp_path))
    assert "already holds a run" in message
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


@pytest.fixture
def trained_checkpoint(tmp_path, monkeypatch):
    run_main(vae_train, monkeypatch, "--dataset", "fake", "--epochs", "1",
             "--out", str(tmp_path / "run"), "--embedding", "pca")
    return tmp_path / "run" / "checkpoint.pt"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
@pytest.mark.parametrize("module", [vae_train, vae_sample])
def test_corrupt_or_truncated_checkpoint(trained_checkpoint, monkeypatch, tmp_path, damage, module):
    data = trained_checkpoint.read_bytes()
    broken = tmp_path / "broken.pt"
    broken.write_bytes({"garbage": b"\x00not a checkpoint" * 50, "truncated": data[:len(data) // 2],
                        "empty": b""}[damage])
    flag = ["--resume"] if module is vae_train else []
    assert "corrupt or truncated" in error_of(module, monkeypatch, *flag, str(broken))


def test_incompatible_checkpoints(trained_checkpoint, monkeypatch, tmp_path):
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    torch.save({**checkpoint, "family": "GAN"}, tmp_path / "gan.pt")
    message = error_of(vae_sample, monkeypatch, str(tmp_path / "gan.pt"))
    assert "is a checkpoint of the GAN family" in message
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    message = error_of(vae_train, monkeypatch, "--resume", str(tmp_path / "foreign.pt"))
    assert "not a checkpoint written by" in message
    checkpoint["model_config"]["latent_dim"] = 7  # the weights no longer fit the model it builds
    torch.save(checkpoint, tmp_path / "mismatch.pt")
    message = error_of(vae_sample, monkeypatch, str(tmp_path / "mismatch.pt"))
    assert "does not fit this model" in message
    assert "does not exist" in error_of(vae_sample, monkeypatch, str(tmp_path / "absent.pt"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(trained_checkpoint, monkeypatch):
    good = trained_checkpoint.read_bytes()
    real_loss = vae_model.VAE.loss

    def loss_that_explodes(self, x, noise=None):
        parts = real_loss(self, x, noise)
        return {**parts, "total": parts["total"] * float("nan")}
    monkeypatch.setattr(vae_model.VAE, "loss", loss_that_explodes)
    message = error_of(vae_train, monkeypatch, "--resume", str(trained_checkpoint), "--epochs", "2")
    assert "the losses became {'train loss': nan} in epoch 2, step" in message
    assert f"{trained_checkpoint} (epoch 1) is kept" in message
    assert trained_checkpoint.read_bytes() == good
    assert torch.load(trained_checkpoint, weights_only=True)["epoch"] == 1


def test_evaluate_reports_a_tighter_bound_than_the_elbo_and_names_it_by_the_data(
        trained_checkpoint, tmp_path, monkeypatch, capsys):
    run_main(vae_evaluate, monkeypatch, str(trained_checkpoint), "--samples", "50",
             "--images", "20")
    line = capsys.readouterr().out
    neg_elbo = float(line.split("-ELBO ")[1].split()[0])
    bound = float(line.split("importance-weighted bound (k=50) ")[1].split()[0])
    assert "20 test images" in line and bound < neg_elbo
    assert "not an NLL" in line  # a Bernoulli on continuous pixels is no likelihood of them
    run_main(vae_train, monkeypatch, "--dataset", "fake", "--epochs", "1", "--binarize",
             "--embedding", "pca", "--out", str(tmp_path / "binary"))
    run_main(vae_evaluate, monkeypatch, str(tmp_path / "binary" / "checkpoint.pt"),
             "--samples", "20", "--images", "10")
    assert "importance-weighted NLL (k=20)" in capsys.readouterr().out
    for flag in ("--samples", "--images", "--batch-size"):
        message = error_of(vae_evaluate, monkeypatch, str(trained_checkpoint), flag, "0")
        assert f"{flag} must be > 0" in message


def test_padded_mnist_is_scored_over_its_original_28x28_area_too(mnist_root, tmp_path, monkeypatch,
                                                                  capsys):
    # 240 of the 1,024 pixels of padded MNIST are always 0: the usual MNIST figure counts the rest.
    run_main(vae_train, monkeypatch, "--data-root", str(mnist_root), "--arch", "conv",
             "--epochs", "1", "--batch-size", "10", "--embedding", "pca",
             "--out", str(tmp_path / "run"))
    assert "over 28x28" in capsys.readouterr().out
    row = read_csv(tmp_path / "run" / "log.csv")[0]
    model, _ = load_trained_model(tmp_path / "run" / "checkpoint.pt", "VAE", vae_model.VAE, "cpu")
    x = torch.rand(4, 1, 32, 32)
    x[..., :2, :], x[..., 30:, :], x[..., :, :2], x[..., :, 30:] = 0, 0, 0, 0
    images = (x * 255).to(torch.uint8)
    torch.manual_seed(0)
    parts = vae_report.evaluate(model, images, 4, slice(2, 30))
    torch.manual_seed(0)
    decoded, mu, logvar = model(images.float() / 255)
    inside = torch.nn.functional.binary_cross_entropy_with_logits(
        decoded[..., 2:30, 2:30], images[..., 2:30, 2:30].float() / 255, reduction="sum") / 4
    kl = model.kl_divergence(mu, logvar).mean().item()
    assert parts["neg_elbo_28x28"] == pytest.approx(inside.item() + kl, rel=1e-5)
    assert parts["neg_elbo_28x28"] < parts["neg_elbo"]  # the padding's pixels cost something
    assert float(row["test_neg_elbo_28x28"]) < float(row["test_neg_elbo"])
    # from evaluate.py too, over 28x28
    run_main(vae_evaluate, monkeypatch, str(tmp_path / "run" / "checkpoint.pt"), "--samples", "5",
             "--images", "10")
    assert "28x28 pixels each" in capsys.readouterr().out
    # an MLP run on 28x28 images has nothing to crop: one figure
    run_main(vae_train, monkeypatch, "--data-root", str(mnist_root), "--epochs", "1",
             "--batch-size", "10", "--embedding", "pca", "--out", str(tmp_path / "mlp"))
    assert "test_neg_elbo_28x28" not in read_csv(tmp_path / "mlp" / "log.csv")[0]


def test_a_gaussian_vae_is_reported_in_bits_per_dimension(tmp_path, monkeypatch, capsys):
    run_main(vae_train, monkeypatch, "--dataset", "fake", "--epochs", "1", "--likelihood",
             "gaussian", "--embedding", "pca", "--out", str(tmp_path / "run"))
    run_main(vae_evaluate, monkeypatch, str(tmp_path / "run" / "checkpoint.pt"), "--samples", "10",
             "--images", "10")
    line = capsys.readouterr().out.splitlines()[-1]
    assert "bits/dim" in line and "dequantized" in line and "NLL" not in line
    from_elbo = float(line.split(": ")[1].split(" bits/dim")[0])
    from_bound = float(line.split("from the ELBO, ")[1].split(" bits/dim")[0])
    assert 0 < from_bound <= from_elbo  # -log P(x) of 8-bit data is positive; the bound is tighter


def test_bits_per_dim_of_a_uniform_density_is_eight():
    # p(y) = 1 on [0, 1]^D: every 8-bit value has probability 1/256, 8 bits per dimension.
    assert vae_model.bits_per_dim(0.0, 784) == pytest.approx(8.0)


def test_validation_scores_held_out_training_images_and_never_the_test_set(mnist_root, tmp_path,
                                                                            monkeypatch, capsys):
    # Settings are chosen on --validation runs: the last sixth of the 50 training images (8) is
    # held out and scored, the test images (filled with 0..19) are never read by the loop.
    run_main(vae_train, monkeypatch, "--data-root", str(mnist_root), "--arch", "conv",
             "--width", "8", "--epochs", "1", "--batch-size", "6", "--embedding", "pca",
             "--validation", "--out", str(tmp_path / "run"))
    assert "42 train / 8 val images" in capsys.readouterr().out
    row = read_csv(tmp_path / "run" / "log.csv")[0]
    assert not [column for column in row if column.startswith("test_")]
    model, checkpoint = load_trained_model(tmp_path / "run" / "checkpoint.pt", "VAE",
                                           vae_model.VAE, "cpu")
    assert checkpoint["model_config"]["base_channels"] == 8
    assert model.decoder.top_channels == 8 * 2 ** 2  # --width
    train_images, _ = load_dataset("mnist", mnist_root, 32, train=True)
    torch.manual_seed(0)
    held_out = vae_report.evaluate(model, train_images[-8:], 6, slice(2, 30))
    # one z draw each
    assert float(row["val_neg_elbo_28x28"]) == pytest.approx(held_out["neg_elbo_28x28"], rel=1e-3)
    test_images, _ = load_dataset("mnist", mnist_root, 32, train=False)
    on_the_test_set = vae_report.evaluate(model, test_images, 6, slice(2, 30))["neg_elbo"]
    assert float(row["val_neg_elbo"]) != pytest.approx(on_the_test_set, abs=0.5)


def test_cosine_schedule_falls_from_lr_to_zero_and_a_resumed_run_follows_it(tmp_path, monkeypatch):
    common = ["--dataset", "fake", "--arch", "conv", "--width", "8", "--latent-dim", "4",
              "--batch-size", "32", "--lr", "0.002", "--device", "cpu", "--embedding", "pca",
              "--epochs", "2"]
    args = vae_train.make_parser().parse_args(common + ["--lr-schedule", "cosine"])
    factors = [lr_factor(args, epoch, step, 10) for epoch in (1, 2) for step in range(1, 11)]
    assert factors[0] == 1 and factors[10] == pytest.approx(0.5) and 0 < factors[-1] < 0.01
    assert all(later < earlier for earlier, later in zip(factors, factors[1:]))
    assert lr_factor(vae_train.make_parser().parse_args(common), 2, 10, 10) == 1  # constant

    straight, resumed = straight_and_resumed(vae_train, monkeypatch, tmp_path, *common,
                                             "--lr-schedule", "cosine")
    run_main(vae_train, monkeypatch, *common, "--out", str(tmp_path / "constant"))
    constant = torch.load(tmp_path / "constant" / "checkpoint.pt", weights_only=True)
    assert 0 < straight["optimizer"]["param_groups"][0]["lr"] < 0.002 * 0.05  # the last step's
    assert constant["optimizer"]["param_groups"][0]["lr"] == 0.002
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    assert any(not torch.equal(tensor, constant["model"][name])
               for name, tensor in straight["model"].items())
