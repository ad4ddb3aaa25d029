"""Thumbnails (parley/thumbnails.py): sizes, upright and without metadata, the first frame of an
animation, and what is refused (not an image, a decompression bomb)."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from parley.thumbnails import NotAnImage, is_image, make_thumbnails


def encoded(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_a_photo_gets_each_size_smaller_than_itself_as_webp_keeping_its_aspect():
    thumbs = make_thumbnails(encoded(Image.new("RGB", (1000, 500), "red"), "JPEG"))
    assert (thumbs.width, thumbs.height) == (1000, 500)
    assert sorted(thumbs.images) == [96, 480]
    with Image.open(io.BytesIO(thumbs.images[96])) as small:
        assert (small.format, small.size) == ("WEBP", (96, 48))


def test_an_image_is_never_upscaled_the_first_size_it_fits_in_is_itself_and_the_last():
    thumbs = make_thumbnails(encoded(Image.new("RGB", (300, 200)), "PNG"))
    assert sorted(thumbs.images) == [96, 480]
    with Image.open(io.BytesIO(thumbs.images[480])) as whole:
        assert whole.size == (300, 200)


def test_a_small_image_is_not_upscaled_but_still_gets_the_smallest_thumbnail():
    thumbs = make_thumbnails(encoded(Image.new("RGB", (50, 40)), "PNG"))
    assert sorted(thumbs.images) == [96]
    with Image.open(io.BytesIO(thumbs.images[96])) as small:
        assert small.size == (50, 40)


def test_exif_is_stripped_and_the_orientation_applied():
    img = Image.new("RGB", (200, 100), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: shown 100 x 200
    exif[0x010F] = "SpyCam"  # Make
    thumbs = make_thumbnails(encoded(img, "JPEG", exif=exif.tobytes()))
    assert (thumbs.width, thumbs.height) == (100, 200)
    for data in thumbs.images.values():
        with Image.open(io.BytesIO(data)) as out:
            assert not out.getexif() and "exif" not in out.info
            assert b"SpyCam" not in data


def test_an_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (120, 120), colour) for colour in ("red", "lime")]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    thumbs = make_thumbnails(data)
    with Image.open(io.BytesIO(thumbs.images[96])) as out:
        red, green, _ = out.convert("RGB").getpixel((48, 48))
        assert red > 200 and green < 50 and getattr(out, "n_frames", 1) == 1


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("data", [png_claiming(100_000, 100_000), png_claiming(7000, 7000)],
                         ids=["beyond Pillow's bound", "beyond ours"])
def test_a_decompression_bomb_is_refused_before_it_is_decoded(data):
    with pytest.raises(NotAnImage):
        make_thumbnails(data, max_pixels=40_000_000)


def test_what_is_not_an_image_is_refused():
    with pytest.raises(NotAnImage):
        make_thumbnails(b"%PDF-1.4 not a picture")
    with pytest.raises(NotAnImage):
        make_thumbnails(encoded(Image.new("RGB", (300, 300)), "PNG")[:200])  # truncated
    assert is_image("image/png") and not is_image("application/pdf") and not is_image("image/svg+xml")
