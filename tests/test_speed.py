"""The speed flags: --amp is for CUDA only; --channels-last changes the memory layout, not the
numbers."""

import pytest

from conftest import read_csv
from AE import train as ae_train
from GAN import train as gan_train
from VAE import train as vae_train
from test_vae_train import error_of

QUICK = {
    vae_train: ["--embedding", "pca"],
    ae_train: ["--embedding", "pca"],
    gan_train: ["--width", "8", "--fid-every", "0", "--fid-samples", "0"],
}


@pytest.mark.parametrize("module", [vae_train, ae_train, gan_train])
def test_amp_off_cuda_is_one_line_before_anything_is_written(module, tmp_path, monkeypatch):
    message = error_of(
        module,
        monkeypatch,
        "--dataset",
        "fake",
        "--device",
        "cpu",
        "--amp",
        "--out",
        str(tmp_path / "run"),
    )
    assert "--amp (bfloat16 autocast) is for CUDA GPUs, not cpu" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "module, flags, column",
    [(vae_train, ["--arch", "conv"], "test_neg_elbo"), (gan_train, [], "d_loss")],
)
def test_channels_last_trains_the_same_model(module, flags, column, tmp_path):
    logs = []
    for layout in ([], ["--channels-last"]):
        out = tmp_path / f"run{len(logs)}"
        module.train(
            module.make_parser().parse_args(
                [
                    "--dataset",
                    "fake",
                    "--epochs",
                    "1",
                    "--batch-size",
                    "64",
                    "--out",
                    str(out),
                    *QUICK[module],
                    *flags,
                    *layout,
                ]
            )
        )
        logs.append(float(read_csv(out / "log.csv")[0][column]))
    assert logs[1] == pytest.approx(logs[0], rel=1e-4)
