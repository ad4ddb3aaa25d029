"""Thumbnails of images (attachments and avatars) with Pillow: decoded under a pixel bound
(decompression bombs are refused), the first frame of an animation, turned upright by its EXIF
orientation and re-encoded without metadata (EXIF, GPS, comments are dropped), in a few sizes.

CPU work on untrusted bytes: callers run `make_thumbnails` in a thread (asyncio.to_thread), off
the event loop. Pure otherwise: bytes in, bytes out."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

from PIL import Image, ImageOps, UnidentifiedImageError

#: The longest side of each thumbnail, in pixels.
THUMB_SIZES = (96, 480)
#: Images with more pixels than this are not decoded (a 8000 x 5000 photo passes; a 1 KB PNG
#: that claims 100k x 100k does not).
MAX_PIXELS = 40_000_000
#: The types decoded here; anything else is a file without thumbnails.
IMAGE_MIME = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_FORMATS = ["PNG", "JPEG", "GIF", "WEBP"]
THUMB_MIME = "image/webp"

# Pillow's own bound, as a second line behind ours: above it Pillow raises
# DecompressionBombError whatever the caller does.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class NotAnImage(ValueError):
    """The bytes are not an image of an accepted type, or it is too large to decode."""


@dataclass(frozen=True, slots=True)
class Thumbnails:
    width: int
    height: int
    #: Longest side -> WebP bytes: each size up to the first one the whole image fits in (that
    #: one is the image itself, re-encoded: nothing is upscaled).
    images: dict[int, bytes] = field(default_factory=dict)


def is_image(mime: str) -> bool:
    return mime in IMAGE_MIME


def thumbnail_key(key: str, size: int) -> str:
    """Where the thumbnail of the object `key` is stored, beside it (keys stay [a-z0-9])."""
    return f"{key}t{size}"


def make_thumbnails(data: bytes, sizes: tuple[int, ...] = THUMB_SIZES, max_pixels: int = MAX_PIXELS) -> Thumbnails:
    """The image's size (upright) and its thumbnails; NotAnImage if it cannot be one."""
    try:
        with warnings.catch_warnings():
            # Pillow warns between MAX_IMAGE_PIXELS and twice it; here every bomb is refused.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_FORMATS) as img:
                if img.width * img.height > max_pixels:
                    raise NotAnImage(f"the image has more than {max_pixels} pixels")
                img.seek(0)  # an animation: its first frame
                upright = ImageOps.exif_transpose(img)  # a copy, turned by its EXIF orientation
                frame = upright.convert("RGBA" if _has_alpha(img) else "RGB")
                width, height = frame.size
                out: dict[int, bytes] = {}
                for size in sorted(sizes):
                    thumb = frame.copy()
                    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)  # never upscales
                    buf = io.BytesIO()
                    thumb.save(buf, "WEBP", quality=80)  # no exif= argument: no metadata is written
                    out[size] = buf.getvalue()
                    if max(width, height) <= size:
                        break  # this one is the whole image: a larger size would be the same
                return Thumbnails(width, height, out)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NotAnImage(str(exc) or "not an image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt data
        if isinstance(exc, NotAnImage):
            raise
        raise NotAnImage(f"the image cannot be decoded: {exc}") from None


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
