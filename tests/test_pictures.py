import math

import pytest
import torch
from PIL import Image

from common.pictures import (
    interpolation_pairs,
    nice_ticks,
    pca,
    save_curves,
    save_training_gif,
    save_scatter,
    tsne,
    write_samples,
)


def test_tsne_separates_two_well_separated_gaussian_blobs():
    generator = torch.Generator().manual_seed(0)
    blobs = torch.cat(
        [torch.randn(100, 10, generator=generator), torch.randn(100, 10, generator=generator) + 6]
    )
    embedded = tsne(blobs, perplexity=20)
    first, second = embedded[:100], embedded[100:]
    gap = (first.mean(0) - second.mean(0)).norm()
    spread = max(first.std(0).norm(), second.std(0).norm())
    assert embedded.shape == (200, 2) and gap > 3 * spread
    # every point is nearer its own blob's centre than the other's
    nearer_own = (
        (first - first.mean(0)).norm(dim=1) < (first - second.mean(0)).norm(dim=1)
    ).all() and ((second - second.mean(0)).norm(dim=1) < (second - first.mean(0)).norm(dim=1)).all()
    assert nearer_own


def test_pca_keeps_the_direction_of_largest_variance():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=generator) * torch.tensor([10.0, 1.0, 0.1])
    projected = pca(x, 1)
    assert projected.shape == (500, 1)
    assert torch.allclose(projected.abs().flatten(), (x[:, 0] - x[:, 0].mean()).abs(), atol=0.5)


def test_pictures_are_written_as_valid_images(tmp_path):
    save_curves(
        tmp_path / "curves.png", {"train": [3.0, 2.0, 1.5], "test": [3.2, 2.5, 2.0]}, title="loss"
    )
    save_curves(tmp_path / "one_epoch.png", {"train": [3.0]})
    save_scatter(tmp_path / "scatter.png", torch.randn(50, 2), torch.arange(50) % 10)
    (tmp_path / "frames").mkdir()
    for i in range(3):
        Image.new("L", (8, 8), i * 80).save(tmp_path / "frames" / f"samples_{i:03d}.png")
    save_training_gif(tmp_path, "samples", last_frame=tmp_path / "samples.png")
    last = (tmp_path / "frames" / "samples_002.png").read_bytes()
    assert (tmp_path / "samples.png").read_bytes() == last
    for name in ["curves.png", "one_epoch.png", "scatter.png", "training.gif"]:
        with Image.open(tmp_path / name) as image:
            image.verify()
    with Image.open(tmp_path / "training.gif") as gif:
        assert gif.n_frames >= 3


def test_samples_go_to_a_grid_or_a_tensor(tmp_path):
    images = torch.rand(5, 1, 8, 8)
    write_samples(images, tmp_path / "nested" / "grid.png")
    assert Image.open(tmp_path / "nested" / "grid.png").size[0] > 8 * 2
    write_samples(images, tmp_path / "samples.pt")
    assert torch.equal(torch.load(tmp_path / "samples.pt", weights_only=True), images)


def test_an_epoch_axis_has_whole_epochs_only():
    assert nice_ticks(1, 2, integer=True) == [1, 2]
    assert all(tick == int(tick) for tick in nice_ticks(1, 3, integer=True))


def test_the_scatter_keeps_its_y_title_inside_the_picture(tmp_path):
    points, labels = torch.randn(50, 2), torch.arange(50) % 3
    save_scatter(tmp_path / "scatter.png", points, labels, y_label="tsne 2")
    with Image.open(tmp_path / "scatter.png") as image:
        grey = image.convert("L")
        assert grey.crop((0, 0, 24, image.height)).getextrema()[0] < 128  # the title is there
        assert grey.crop((0, 0, 1, image.height)).getextrema()[0] == 255  # and not cut by the edge


@pytest.mark.parametrize(
    "low, high", [(1, 10), (98.5, 140.2), (0.00577, 0.0269), (3.0, 3.0), (-7.3, 12.9)]
)
def test_axis_ticks_are_round_values_that_cover_the_data(low, high):
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high and 4 <= len(ticks) <= 12
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 5))
    assert all(math.isclose(b - a, step) for a, b in zip(ticks, ticks[1:]))


def test_interpolation_rows_go_from_class_r_to_class_r_plus_5():
    labels = torch.tensor(
        [
            7,
            2,
            1,
            0,
            4,
            1,
            4,
            9,
            5,
            9,
            0,
            6,
            9,
            0,
            1,
            5,
            9,
            7,
            3,
            4,
            9,
            6,
            6,
            5,
            4,
            0,
            7,
            4,
            0,
            1,
            3,
            1,
            3,
            4,
            8,
        ]
    )
    pairs = interpolation_pairs(labels)
    assert [(labels[a].item(), labels[b].item()) for a, b in pairs] == [
        (0, 5),
        (1, 6),
        (2, 7),
        (3, 8),
        (4, 9),
        (5, 0),
        (6, 1),
        (7, 2),
    ]
    assert pairs[4] == (4, 7)  # the first 4 to the first 9


def test_interpolation_without_every_class_pairs_image_r_with_image_r_plus_8():
    assert interpolation_pairs(torch.zeros(20, dtype=torch.int64)) == [(r, r + 8) for r in range(8)]
    assert interpolation_pairs(torch.tensor([0, 1, 3] * 7)) == [
        (r, r + 8) for r in range(8)
    ]  # class 2 missing


def test_a_one_dimensional_code_and_a_handful_of_points_still_draw(tmp_path):
    assert pca(torch.randn(5, 1)).shape == (5, 2)
    for count in (1, 3, 6):
        flat = tsne(torch.randn(count, 4))
        assert flat.shape == (count, 2) and bool(flat.isfinite().all())
    save_scatter(tmp_path / "scatter.png", pca(torch.randn(5, 1)), torch.arange(5))
