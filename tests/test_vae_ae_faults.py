"""The VAE and AE scripts meet bad input and faults with one line, and their end of run can be
finished: sample.py's flags and --out, a full disk or Ctrl-C during the end-of-run pictures, and
the slow t-SNE announced before it starts."""

import pytest
import torch

from AE import report as ae_report
from AE import sample as ae_sample
from AE import train as ae_train
from conftest import full_disk_for, read_csv
from test_vae_train import error_of, run_main
from VAE import report as vae_report
from VAE import sample as vae_sample
from VAE import train as vae_train

FAKE = ["--dataset", "fake", "--device", "cpu", "--batch-size", "32", "--epochs", "1"]
FAMILIES = {"VAE": (vae_train, vae_sample, vae_report, "draw_latent_figures"),
            "AE": (ae_train, ae_sample, ae_report, "draw_code_figures")}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One trained checkpoint per family."""
    folder = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as monkeypatch:
        for family, (train, *_) in FAMILIES.items():
            run_main(train, monkeypatch, *FAKE, "--embedding", "pca", "--out", str(folder / family))
    return {family: str(folder / family / "checkpoint.pt") for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("flags, said", [
    (["--num", "0"], "--num must be > 0, not 0"), (["--num", "-1"], "--num must be > 0, not -1"),
    (["--batch-size", "0"], "--batch-size must be > 0, not 0")])
def test_sample_refuses_counts_below_one_in_one_line(family, flags, said, checkpoints, tmp_path,
                                                     monkeypatch):
    sample = FAMILIES[family][1]
    out = tmp_path / "samples.png"
    assert said in error_of(sample, monkeypatch, checkpoints[family], *flags, "--out", str(out))
    assert not out.exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_to_an_out_that_cannot_be_written_is_one_line(family, checkpoints, tmp_path,
                                                             monkeypatch):
    sample = FAMILIES[family][1]
    (tmp_path / "a-file").write_text("not a folder")
    for name in ("samples.png", "samples.pt"):
        message = error_of(sample, monkeypatch, checkpoints[family], "--num", "4",
                           "--out", str(tmp_path / "a-file" / name))
        assert "could not write" in message and name in message
    full_disk_for(monkeypatch, "samples.pt")
    message = error_of(sample, monkeypatch, checkpoints[family], "--num", "4",
                       "--out", str(tmp_path / "samples.pt"))
    assert "No space left on device" in message
    assert not (tmp_path / "samples.pt").exists() and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_full_disk_at_the_end_of_a_run_is_one_line_and_the_end_can_be_finished(family, tmp_path,
                                                                                 monkeypatch):
    train = FAMILIES[family][0]
    disk_freed = full_disk_for(monkeypatch, "interpolation.png")
    message = error_of(train, monkeypatch, *FAKE, "--embedding", "pca", "--out", str(tmp_path))
    assert "interpolation.png: No space left on device" in message
    assert "free some space, then continue with --resume" in message
    assert not (tmp_path / "interpolation.png").exists() and not list(tmp_path.rglob("*.tmp"))
    disk_freed()
    run_main(train, monkeypatch, "--resume", str(tmp_path / "checkpoint.pt"))
    assert (tmp_path / "interpolation.png").is_file()
    assert [row["epoch"] for row in read_csv(tmp_path / "log.csv")] == ["1"]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["finished"]


@pytest.mark.parametrize("family", FAMILIES)
def test_ctrl_c_during_the_end_pictures_can_be_resumed_to_finish_them(family, tmp_path,
                                                                      monkeypatch):
    train, _, _, draw = FAMILIES[family]
    real_draw = getattr(train, draw)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train, draw, interrupted)
    with pytest.raises(SystemExit, match="holds epoch 1; continue with --resume"):
        run_main(train, monkeypatch, *FAKE, "--embedding", "pca", "--out", str(tmp_path))
    assert not (tmp_path / "interpolation.png").exists()
    assert not torch.load(tmp_path / "checkpoint.pt", weights_only=True).get("finished")
    monkeypatch.setattr(train, draw, real_draw)
    run_main(train, monkeypatch, "--resume", str(tmp_path / "checkpoint.pt"))
    assert (tmp_path / "interpolation.png").is_file() and (tmp_path / "training.gif").is_file()
    assert "run is finished" in error_of(train, monkeypatch, "--resume",
                                         str(tmp_path / "checkpoint.pt"))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_t_sne_is_announced_before_it_starts(family, tmp_path, monkeypatch, capsys):
    train, _, report, _ = FAMILIES[family]
    real_tsne = report.tsne
    said_before = []

    def tsne(points):
        said_before.append("drawing the t-SNE of 64 test-set" in capsys.readouterr().out)
        return real_tsne(points, iterations=10)
    monkeypatch.setattr(report, "tsne", tsne)
    run_main(train, monkeypatch, *FAKE, "--latent-dim", "4", "--out", str(tmp_path))
    assert said_before == [True]
    assert list(tmp_path.glob("*_tsne.png"))


@pytest.mark.parametrize("family, flags", [("VAE", ["--arch", "conv"]), ("AE", [])])
def test_an_image_size_the_conv_blocks_cannot_take_is_refused_before_any_decoding(
        family, flags, tmp_path, monkeypatch):
    from common import data
    from conftest import write_images
    write_images(tmp_path / "images", 12)

    def decode(*args):
        raise AssertionError("an image was decoded")
    monkeypatch.setattr(data, "decode", decode)
    message = error_of(FAMILIES[family][0], monkeypatch, "--dataset", "folder", "--data-root",
                       str(tmp_path / "images"), "--image-size", "48", *flags,
                       "--out", str(tmp_path / "run"))
    assert "image size 48 is not supported" in message
