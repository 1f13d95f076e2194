import pytest
import torch

from common import InputError
from common.blocks import DownBlock, UpBlock, num_halvings


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_down_block_halves_resolution(downsample, batch_norm):
    block = DownBlock(16, 32, batch_norm=batch_norm, downsample=downsample)
    assert block(torch.randn(2, 16, 32, 32)).shape == (2, 32, 16, 16)
    assert any(isinstance(layer, torch.nn.BatchNorm2d) for layer in block) == batch_norm


def test_up_block_is_the_inverse_shape():
    assert UpBlock(32, 16)(torch.randn(2, 32, 16, 16)).shape == (2, 16, 32, 32)
    assert UpBlock(3, 8, batch_norm=False)(torch.randn(1, 3, 4, 4)).shape == (1, 8, 8, 8)


def test_unknown_downsample_is_refused():
    with pytest.raises(ValueError, match="downsample"):
        DownBlock(1, 2, downsample="avgpool")


@pytest.mark.parametrize("size, halvings", [(8, 1), (32, 3), (64, 4), (128, 5)])
def test_num_halvings(size, halvings):
    assert num_halvings(size) == halvings


@pytest.mark.parametrize("size", [28, 48, 4, 100])
def test_num_halvings_refuses_sizes_that_do_not_halve_to_4(size):
    with pytest.raises(InputError, match=f"image size {size} is not supported"):
        num_halvings(size)
