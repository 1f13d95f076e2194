"""AE/model.py, AE/train.py and AE/sample.py."""
import subprocess
import sys

import pytest
import torch

from AE import report as ae_report
from AE import sample as ae_sample
from AE import train as ae_train
from AE.model import PCA, ConvAE, LinearAE
from common.data import original_area
from conftest import ROOT, read_csv
from test_vae_train import error_of, run_main


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 32, 32), (1, 64, 64), (3, 64, 64)])
def test_shapes(shape):
    x = torch.rand(2, *shape)
    conv = ConvAE(shape)
    code = conv.encode(x)
    assert code.dim() == 4 and code.shape[-2:] == (4, 4)
    assert code.shape[1] > shape[0]  # a small image with many channels
    assert not any(isinstance(layer, torch.nn.Linear) for layer in conv.modules())
    assert conv.reconstruct(x).shape == x.shape
    linear = LinearAE(shape, code_dim=16)
    assert linear.encode(x).shape == (2, 16) and linear.reconstruct(x).shape == x.shape


def test_pca_matches_a_direct_svd():
    torch.manual_seed(0)
    x = torch.randn(300, 12) @ torch.randn(12, 12) + 3
    pca = PCA(4).fit(x, chunk_size=64)  # several chunks: the sums must add up to the whole
    centred = (x - x.mean(0)).double()
    u, s, vt = torch.linalg.svd(centred, full_matrices=False)
    direct = (u[:, :4] * s[:4]) @ vt[:4] + x.mean(0).double()  # the best rank-4 approximation
    assert torch.allclose(pca.reconstruct(x).double(), direct, atol=1e-4)
    # the same codes, up to each axis' sign
    assert torch.allclose(pca.encode(x).abs(), (u[:, :4] * s[:4]).abs(), atol=1e-4)


def test_pca_beyond_the_exact_size_finds_the_same_subspace():
    torch.manual_seed(0)
    x = torch.randn(400, 6) @ torch.randn(6, 300) * 3 + 0.1 * torch.randn(400, 300)  # rank 6, noise
    exact = PCA(6).fit(x)
    randomized = PCA(6).fit(x, exact_up_to=100)
    assert torch.allclose(randomized.reconstruct(x), exact.reconstruct(x), atol=1e-3)


def test_sigmoid_codes_stay_in_the_unit_interval():
    model = LinearAE(code_dim=8, code_activation="sigmoid")
    x = torch.rand(16, 1, 32, 32)
    with torch.no_grad():  # scale the raw codes to span [-8, 8]: far outside (0, 1) ...
        scale = 8 / model.encoder(x).abs().max()
        model.encoder[-1].weight.mul_(scale)
        model.encoder[-1].bias.mul_(scale)
    assert model.encoder(x).abs().max() > 7
    codes = model.encode(x)  # ... and the squashed ones stay inside
    assert (codes > 0).all() and (codes < 1).all()


def test_code_l2_term_has_the_right_weight():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 32, 32)
    model = LinearAE(code_dim=8, code_l2=0.2).eval()
    parts = model.loss(x)
    expected = 0.2 * model.encode(x).square().sum(1).mean()
    assert torch.allclose(parts["code_l2"], expected)
    assert torch.allclose(parts["total"], parts["recon"] + expected)
    assert LinearAE(code_dim=8).eval().loss(x)["code_l2"] == 0


def test_mse_loss_option():
    model = ConvAE(recon_loss="mse").eval()
    x = torch.rand(2, 1, 32, 32)
    expected = (model.reconstruct(x) - x).square().flatten(1).sum(1).mean()
    assert torch.allclose(model.loss(x)["recon"], expected)


@pytest.mark.parametrize("model", [LinearAE(code_dim=8), ConvAE()], ids=["linear", "conv"])
def test_overfits_one_batch(model):
    torch.manual_seed(0)
    x = torch.rand(16, 1, 32, 32).round()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model.loss(x)["total"].item()
    for _ in range(100):
        loss = model.loss(x)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.3 * first


def test_mse_per_pixel_ignores_the_padding():
    images = torch.zeros(3, 1, 32, 32, dtype=torch.uint8)
    images[..., 2:30, 2:30] = 255
    area = original_area("mnist", 32)
    assert ae_report.mse_per_pixel(torch.zeros_like, images, area) == pytest.approx(1.0)
    whole = ae_report.mse_per_pixel(torch.zeros_like, images, original_area("folder", 32))
    assert whole == pytest.approx(784 / 1024)


def test_command_line_smoke_run(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, str(ROOT / "AE" / "train.py"), "--dataset", "fake",
                             "--epochs", "1", "--latent-dim", "2", "--out", str(out),
                             "--device", "cpu"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "PCA" in result.stdout and "test MSE per pixel" in result.stdout
    for name in ["log.csv", "checkpoint.pt", "reconstructions.png", "training.gif",
                 "frames/reconstructions_001.png", "loss_curves.png", "samples.png",
                 "interpolation.png", "codes_2d.png", "manifold.png"]:
        assert (out / name).is_file(), name


def test_conv_run_resume_and_sample(tmp_path, monkeypatch):
    common = ["--dataset", "fake", "--arch", "conv", "--batch-size", "32", "--device", "cpu",
              "--embedding", "pca"]
    run_main(ae_train, monkeypatch, *common, "--epochs", "2", "--out", str(tmp_path / "straight"))
    run_main(ae_train, monkeypatch, *common, "--epochs", "1", "--out", str(tmp_path / "split"))
    run_main(ae_train, monkeypatch, "--resume", str(tmp_path / "split" / "checkpoint.pt"),
             "--epochs", "2")
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, split["model"][name]), name
    assert (tmp_path / "split" / "codes_pca.png").is_file()

    checkpoint = str(tmp_path / "split" / "checkpoint.pt")
    run_main(ae_sample, monkeypatch, checkpoint, "--num", "6", "--out", str(tmp_path / "s.pt"))
    images = torch.load(tmp_path / "s.pt", weights_only=True)
    assert images.shape == (6, 1, 32, 32) and 0 <= images.min() and images.max() <= 1
    from VAE import sample as vae_sample
    assert "is a checkpoint of the AE family" in error_of(vae_sample, monkeypatch, checkpoint)


def test_an_overcomplete_code_gets_no_pca_figure(tmp_path, monkeypatch, capsys):
    # The conv AE's code at 32x32 is 128 x 4 x 4 = 2,048 numbers for 1,024 pixels: PCA with 1,024
    # components is exact, so a comparison with it would mean nothing.
    run_main(ae_train, monkeypatch, "--dataset", "fake", "--arch", "conv", "--batch-size", "32",
             "--device", "cpu", "--embedding", "pca", "--epochs", "1",
             "--out", str(tmp_path / "conv"))
    output = capsys.readouterr().out
    assert "overcomplete" in output and "PCA with 2048 components" not in output
    rows = read_csv(tmp_path / "conv" / "log.csv")
    assert rows[0]["pca_mse_per_pixel"] == "" and float(rows[0]["test_mse_per_pixel"]) > 0


def test_l2_on_sigmoid_codes_is_warned_about(tmp_path, monkeypatch, capsys):
    common = ["--dataset", "fake", "--latent-dim", "2", "--batch-size", "32", "--device", "cpu",
              "--epochs", "1"]
    run_main(ae_train, monkeypatch, *common, "--code-activation", "sigmoid", "--code-l2", "0.2",
             "--out", str(tmp_path / "a"))
    assert "warning: --code-l2 pulls sigmoid codes toward 0" in capsys.readouterr().out
    run_main(ae_train, monkeypatch, *common, "--code-l2", "0.2", "--out", str(tmp_path / "b"))
    assert "warning" not in capsys.readouterr().out


def test_bad_inputs(tmp_path, monkeypatch):
    assert "unknown dataset" in error_of(ae_train, monkeypatch, "--dataset", "svhn",
                                         "--out", str(tmp_path))
    assert "image size 48" in error_of(ae_train, monkeypatch, "--dataset", "fake",
                                       "--image-size", "48", "--out", str(tmp_path))
    (tmp_path / "broken.pt").write_bytes(b"\x00" * 100)
    assert "corrupt or truncated" in error_of(ae_sample, monkeypatch, str(tmp_path / "broken.pt"))


def test_help_fits_on_one_screen(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert len(ae_train.make_parser().format_help().splitlines()) <= 60
