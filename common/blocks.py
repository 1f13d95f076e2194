"""The two building blocks of every conv model in this repository.

DownBlock halves the resolution and (as the models use it) doubles the channels;
UpBlock is its inverse. Stacking k DownBlocks takes a 32x32 image to 32/2^k pixels.
"""
from torch import nn

from common import InputError


class DownBlock(nn.Sequential):
    """(B, C_in, H, W) -> (B, C_out, H/2, W/2): conv, optional BatchNorm, LeakyReLU(0.2).

    downsample="stride" uses a 4x4 convolution with stride 2 (DCGAN);
    downsample="maxpool" uses a 3x3 convolution followed by 2x2 max-pooling.
    """

    def __init__(self, in_channels, out_channels, batch_norm=True, downsample="stride"):
        if downsample == "stride":
            layers = [nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=not batch_norm)]
        elif downsample == "maxpool":
            layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm),
                      nn.MaxPool2d(2)]
        else:
            raise ValueError(f"downsample must be 'stride' or 'maxpool', not {downsample!r}")
        if batch_norm:  # no bias above: BatchNorm's shift makes it redundant
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.LeakyReLU(0.2))
        super().__init__(*layers)


class UpBlock(nn.Sequential):
    """(B, C_in, H, W) -> (B, C_out, 2H, 2W): 4x4 transposed conv (stride 2), BatchNorm, ReLU."""

    def __init__(self, in_channels, out_channels, batch_norm=True):
        layers = [nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU())
        super().__init__(*layers)


def num_halvings(image_size, smallest=4):
    """How many DownBlocks take image_size down to `smallest` pixels; InputError if none do."""
    halvings, size = 0, image_size
    while size > smallest and size % 2 == 0:
        size, halvings = size // 2, halvings + 1
    if size != smallest or halvings == 0:
        raise InputError(f"image size {image_size} is not supported: the conv models need a power "
                         f"of two from {2 * smallest} up (32 or 64); resize with --image-size")
    return halvings
