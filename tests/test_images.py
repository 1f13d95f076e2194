"""Every image file decodes to what an image viewer shows: files written in each mode and tag."""
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from common import InputError
from common.data import decode, load_dataset

GRADIENT = np.arange(256, dtype=np.uint8).reshape(16, 16)  # what each file below should show


def write_tiff(path, samples, bits, sample_format=1, photometric=1):
    """A one-strip grey little-endian TIFF of raw sample bytes, for what Pillow cannot write."""
    tags = [(256, 4, 16), (257, 4, 16), (258, 3, bits), (259, 3, 1), (262, 3, photometric),
            (273, 4, 8), (277, 3, 1), (278, 4, 16), (279, 4, len(samples)), (339, 3, sample_format)]
    entries = b"".join(struct.pack("<HHII" if kind == 4 else "<HHIHxx", tag, kind, 1, value)
                       for tag, kind, value in tags)
    path.write_bytes(b"II*\0" + struct.pack("<I", 8 + len(samples)) + samples
                     + struct.pack("<H", len(tags)) + entries + b"\0\0\0\0")
    return path


def shown(path, size=16):
    """The decoded file as (S, S) if grey, (S, S, 3) if colour."""
    image = decode(path, size).astype(int)
    return image[..., 0] if image.shape[2] == 1 else image


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grey_is_scaled_from_its_full_range(tmp_path, suffix):
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(GRADIENT.astype(np.uint16) * 257).save(path)  # mode I;16
    assert np.array_equal(shown(path), GRADIENT)


def test_16_bit_big_endian_tiff(tmp_path):
    samples = (GRADIENT.astype(">u2") * 257).tobytes()
    Image.frombytes("I;16B", (16, 16), samples).save(tmp_path / "big.tif")
    assert Image.open(tmp_path / "big.tif").mode == "I;16B"
    assert np.array_equal(shown(tmp_path / "big.tif"), GRADIENT)


def test_a_16_bit_pgm_is_scaled_by_its_maxval(tmp_path):
    samples = np.round(GRADIENT * 4095.0 / 255).astype(">u2").tobytes()
    (tmp_path / "scan.pgm").write_bytes(b"P5\n16 16\n4095\n" + samples)
    assert np.array_equal(shown(tmp_path / "scan.pgm"), GRADIENT)


def test_12_bit_values_in_16_bit_samples_look_dark_as_in_a_viewer(tmp_path):
    Image.fromarray(GRADIENT.astype(np.uint16) * 16).save(tmp_path / "twelve.png")
    assert np.array_equal(shown(tmp_path / "twelve.png"), np.round(GRADIENT * 16.0 / 257))


def test_a_12_bit_tiff_is_scaled_by_its_12_bits(tmp_path):
    values = np.round(GRADIENT.astype(np.float64) * 4095 / 255).astype(int).ravel()
    packed = bytearray()  # two 12-bit samples in three bytes, most significant bits first
    for first, second in zip(values[::2], values[1::2]):
        packed += bytes([first >> 4, (first & 15) << 4 | second >> 8, second & 255])
    assert np.array_equal(shown(write_tiff(tmp_path / "p.tif", bytes(packed), 12)), GRADIENT)


def test_signed_16_bit_tiff_runs_from_its_lowest_value(tmp_path):
    samples = (GRADIENT.astype(int) * 257 - 32768).astype("<i2").tobytes()
    path = write_tiff(tmp_path / "signed.tif", samples, 16, sample_format=2)
    assert Image.open(path).mode == "I" and np.array_equal(shown(path), GRADIENT)


def test_32_bit_integers_stay_grey_and_keep_their_picture(tmp_path):
    for name, scale in [("eight.tif", 1), ("sixteen.tif", 257)]:
        Image.fromarray(GRADIENT.astype(np.int32) * scale).save(tmp_path / name)  # mode I
        assert np.array_equal(shown(tmp_path / name), GRADIENT)  # not 3 channels


def test_float_tiff_runs_from_0_to_1(tmp_path):
    Image.fromarray(GRADIENT.astype(np.float32) / 255).save(tmp_path / "float.tif")  # mode F
    assert np.array_equal(shown(tmp_path / "float.tif"), GRADIENT)


def test_a_min_is_white_16_bit_scan_is_not_inverted(tmp_path):
    samples = ((255 - GRADIENT.astype("<u2")) * 257).tobytes()
    path = write_tiff(tmp_path / "scan.tif", samples, 16, photometric=0)
    assert np.array_equal(shown(path), GRADIENT)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_phone_photo_is_turned_upright_by_its_exif_orientation(tmp_path, suffix):
    stored = np.zeros((16, 16), np.uint8)
    stored[:, :4] = 255  # the left edge as stored is the top edge as shown (orientation 6)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / f"phone{suffix}", exif=exif, quality=95)
    image = shown(tmp_path / f"phone{suffix}")
    assert image[:4].mean() > 200 and image[6:].mean() < 50


def test_transparent_parts_are_shown_over_white(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 200                       # red everywhere
    rgba[:8, :, 3] = 255                     # opaque in the top half, transparent below
    rgba[8:12, :, 3] = 128                   # half transparent
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    image = shown(tmp_path / "rgba.png")
    assert (image[0, 0] == [200, 0, 0]).all() and (image[15, 0] == 255).all()
    assert abs(image[9, 0, 1] - 127) <= 1
    grey_alpha = Image.fromarray(rgba[..., [1, 3]], "LA")  # black, with the same alpha
    grey_alpha.save(tmp_path / "la.png")
    image = shown(tmp_path / "la.png")
    assert image.shape == (16, 16) and image[0, 0] == 0 and image[15, 0] == 255


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_a_palette_image_with_a_transparent_colour(tmp_path, suffix):
    palette = Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4).repeat(4, 0).repeat(4, 1))
    palette = palette.convert("P")
    palette.putpalette([0, 0, 255] * 256)  # every index blue ...
    palette.save(tmp_path / f"p{suffix}", transparency=0)  # ... but index 0 is transparent
    image = shown(tmp_path / f"p{suffix}")
    assert (image[0, 0] == 255).all() and (image[15, 15] == [0, 0, 255]).all()


def test_grey_with_a_transparent_value(tmp_path):
    Image.fromarray(GRADIENT).save(tmp_path / "grey.png", transparency=0)
    image = shown(tmp_path / "grey.png")
    assert image[0, 0] == 255 and image[0, 1] == 1


WHITE = {"I;16": np.uint16(65535), "I": np.int32(65535), "F": np.float32(1)}


@pytest.mark.parametrize("mode, channels", [("1", 1), ("L", 1), ("LA", 1), ("I;16", 1), ("I", 1),
                                            ("F", 1), ("P", 3), ("RGB", 3), ("RGBA", 3),
                                            ("CMYK", 3), ("YCbCr", 3), ("LAB", 3)])
def test_grey_modes_stay_one_channel_and_colour_modes_three(tmp_path, mode, channels):
    if mode in WHITE:
        image = Image.fromarray(np.full((16, 16), WHITE[mode]))
    else:
        image = Image.fromarray(np.full((16, 16, 3), 255, np.uint8)).convert(mode)
    suffix = ".png" if mode in ("P", "LA", "RGBA") else ".tif"
    image.save(tmp_path / f"image{suffix}")
    assert Image.open(tmp_path / f"image{suffix}").mode == mode
    decoded = shown(tmp_path / f"image{suffix}")
    assert decoded.shape == (16, 16) + ((3,) if channels == 3 else ())
    assert decoded.min() >= 250  # white in every mode


def test_an_animation_or_a_multi_page_file_shows_its_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((16, 16), value, np.uint8)) for value in (10, 240)]
    for suffix in (".gif", ".tif"):
        frames[0].save(tmp_path / f"many{suffix}", save_all=True, append_images=frames[1:])
        assert shown(tmp_path / f"many{suffix}").max() <= 12


def test_colour_profiles_are_applied_or_else_harmless(tmp_path):
    from PIL import ImageCms
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    colours = np.stack([GRADIENT, GRADIENT[::-1], GRADIENT.T], axis=2)
    Image.fromarray(colours).save(tmp_path / "srgb.png", icc_profile=srgb)
    assert np.abs(shown(tmp_path / "srgb.png") - colours).max() <= 2
    Image.fromarray(colours).save(tmp_path / "damaged.png", icc_profile=b"not a profile")
    assert np.array_equal(shown(tmp_path / "damaged.png"), colours)
    Image.fromarray(GRADIENT).save(tmp_path / "grey.png", icc_profile=srgb)  # a colour profile
    assert np.array_equal(shown(tmp_path / "grey.png"), GRADIENT)  # on grey values: as stored


def test_a_16_bit_folder_decodes_like_its_8_bit_copy(tmp_path):
    (tmp_path / "eight").mkdir()
    (tmp_path / "deep").mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        picture = rng.integers(0, 256, (16, 16), dtype=np.uint16)
        Image.fromarray(picture.astype(np.uint8)).save(tmp_path / "eight" / f"{i}.png")
        Image.fromarray(picture * 257).save(tmp_path / "deep" / f"{i}.tif")
    eight, _ = load_dataset("folder", tmp_path / "eight", image_size=16)
    deep, _ = load_dataset("folder", tmp_path / "deep", image_size=16)
    assert deep.shape == (9, 1, 16, 16) and torch.equal(deep, eight)


def test_an_unreadable_image_is_one_line_naming_it(tmp_path):
    (tmp_path / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(InputError, match="cannot read image .*truncated.png"):
        decode(tmp_path / "truncated.png", 8)


def test_a_transparent_value_in_a_16_bit_file_is_white(tmp_path):
    samples = (GRADIENT.astype(np.uint16) * 257)
    samples[:8] = 0
    Image.fromarray(samples).save(tmp_path / "t.png", transparency=0)
    picture = shown(tmp_path / "t.png")
    assert picture.ndim == 2 and (picture[:8] == 255).all()
    assert np.abs(picture[8:] - GRADIENT[8:]).max() <= 1


def test_a_grey_palette_stays_one_channel_and_a_colour_one_three(tmp_path):
    for name, palette in [("grey", lambda i: (i, i, i)), ("colour", lambda i: (i, 0, 255 - i))]:
        image = Image.fromarray(GRADIENT, "P")
        image.putpalette([v for i in range(256) for v in palette(i)])
        image.save(tmp_path / f"{name}.png")
    assert shown(tmp_path / "grey.png").ndim == 2 and shown(tmp_path / "colour.png").ndim == 3
    assert np.abs(shown(tmp_path / "grey.png") - GRADIENT).max() <= 1
