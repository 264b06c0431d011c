"""Safe image decoding: files or uploads -> (3, H, W) uint8 at a model's input size.

    x = load_image("cat.png", 32)                    # any mode and size; ImageError if unusable
    x = decode_upload(png_bytes, (32, 32))           # the service's formats only, HTTP statuses

Decoding matches how ``cnnbench.data`` reads image folders for training: Pillow, RGB,
transparency flattened onto white, resized to the model's input size with bilinear
filtering, aspect ratio not kept (a CIFAR model sees 32x32 exactly as in training).
Files are checked before they are decoded: a byte limit, then a pixel limit read from the
header, so a decompression bomb is refused without allocating it. Every refusal is one
``ImageError`` whose ``status`` is the HTTP answer: 413 over a limit, 415 not an image (or a
format the service does not take), 422 unreadable or corrupt.

Thread safety: ``load_image`` and ``decode_upload`` keep no state; many threads may call
them at once (Pillow releases the GIL while decoding).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.inference.errors import ImageError

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "check_header",
    "decode_upload",
    "expand_inputs",
    "load_image",
]

# 50 MP: larger images are refused before decoding. A 50 MP RGB image is 150 MB in memory;
# a crafted 100000 x 100000 PNG header would ask for 30 GB.
MAX_PIXELS = 50_000_000
MAX_FILE_BYTES = 100 * 1024 * 1024  # 100 MiB
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")  # what the service takes (decode_upload)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def load_image(
    source: bytes | str | os.PathLike[str],
    size: int | tuple[int, int] | Sequence[int],
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_FILE_BYTES,
) -> np.ndarray:
    """Decode an image file (path or bytes) into a (3, H, W) uint8 array of ``size``.

    Raises ``ImageError`` (one-line reason) for a missing, unreadable, empty, oversized,
    non-image, truncated or corrupt file, and for images over ``max_pixels``. Multi-frame
    files (GIF, TIFF) use their first frame.
    """
    from PIL import Image, UnidentifiedImageError

    h, w = (size, size) if isinstance(size, int) else size
    fp = _open_source(source, max_bytes)
    try:
        with Image.open(fp) as im:  # reads the header only
            _check_pixels(*im.size, max_pixels)
            im.draft("RGB", (w, h))  # JPEG: decode at a reduced scale when possible
            im.load()
            rgb = _flatten_to_rgb(im)
            if rgb.size != (w, h):
                rgb = rgb.resize((w, h), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise _too_many_pixels(f"refused as a decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise _not_an_image("not an image file Pillow can read") from None
    except PermissionError:
        raise _unreadable("permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow reports truncated or corrupt data as OSError / SyntaxError / ValueError.
        raise ImageError(f"corrupt or truncated image data ({e})") from None


def check_header(
    data: bytes, max_pixels: int = MAX_PIXELS, formats: Sequence[str] = ACCEPTED_FORMATS
) -> str:
    """The format of an upload, from its header alone; ``ImageError`` 415 / 413 / 422 if bad."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise _not_an_image("the upload is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=formats) as img:
                fmt, (width, height) = img.format, img.size
    except Image.DecompressionBombError as e:
        raise _too_many_pixels(str(e)) from None
    except UnidentifiedImageError:
        raise _not_an_image(_unidentified_detail(data, formats)) from None
    except Exception as e:  # a header that parses as a format but is malformed
        raise ImageError(f"cannot read the image header ({e})") from None
    if width * height > max_pixels:
        raise _too_many_pixels(
            f"{width}x{height} pixels is more than the limit of {max_pixels:,} pixels"
        )
    return fmt


def decode_upload(
    data: bytes,
    size: int | tuple[int, int] | Sequence[int],
    *,
    max_pixels: int = MAX_PIXELS,
    formats: Sequence[str] = ACCEPTED_FORMATS,
) -> np.ndarray:
    """Uploaded bytes -> (3, H, W) uint8: the header is checked first (``check_header``), and
    an image that then fails to decode is a 422 ``corrupt_image``."""
    fmt = check_header(data, max_pixels, formats)
    try:
        return load_image(data, size, max_pixels=max_pixels, max_bytes=max(len(data), 1))
    except ImageError as e:
        raise ImageError(f"cannot decode the {fmt} image: {e}") from None


def expand_inputs(items: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files named on the command line; a folder gives its image files (sorted, recursive).

    A named file is kept whatever its extension (it is tried, and fails clearly if it is no
    image); in folders only known image extensions are taken.
    """
    from cnnbench.data.imagefolder import IMAGE_EXTENSIONS

    def is_image(f: Path) -> bool:
        return f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")

    out: list[Path] = []
    for item in items:
        p = Path(item)
        out += sorted(f for f in p.rglob("*") if is_image(f)) if p.is_dir() else [p]
    return out


def _open_source(source: bytes | str | os.PathLike[str], max_bytes: int) -> Any:
    """What ``Image.open`` reads (a buffer or a path), once its byte size passed the limit."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_bytes(len(data), max_bytes)
        return io.BytesIO(data)
    path = Path(source)
    try:
        if path.is_dir():
            raise _unreadable("is a folder, not an image file")
        n_bytes = path.stat().st_size
    except FileNotFoundError:
        raise _unreadable("no such file") from None
    except OSError as e:
        raise _unreadable(f"cannot read file ({e.strerror or e})") from None
    _check_bytes(n_bytes, max_bytes)
    return path


def _check_bytes(n_bytes: int, max_bytes: int) -> None:
    if n_bytes > max_bytes:
        raise ImageError(
            f"{n_bytes / 2**20:.1f} MiB is over the {max_bytes / 2**20:.0f} MiB limit",
            status=413,
            error="too_large",
        )
    if n_bytes == 0:
        raise _not_an_image("empty file (0 bytes)")


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise _too_many_pixels(
            f"{width} x {height} = {width * height / 1e6:.0f} MP is over the "
            f"{max_pixels / 1e6:.0f} MP limit"
        )
    if width == 0 or height == 0:
        raise ImageError(f"image has no pixels ({width} x {height})")


def _flatten_to_rgb(im: Any) -> Any:
    """RGB Pillow image of any mode: alpha onto white, 16-bit and float scaled to 8 bits."""
    from PIL import Image

    if im.mode in _SIXTEEN_BIT or im.mode == "I":
        a = np.asarray(im).astype(np.float64)
        # "I" (32-bit) is how Pillow opens some 16-bit files: scale only if values exceed 8 bits.
        scale = 257.0 if (im.mode in _SIXTEEN_BIT or (a.size and a.max() > 255)) else 1.0
        im = Image.fromarray(np.clip(a / scale + 0.5, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        a = a * 255.0 if a.size and a.max() <= 1.0 else a  # floats in [0, 1] or [0, 255]
        im = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "L")
    transparent = im.mode in ("RGBA", "LA", "PA", "La", "RGBa")
    if transparent or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im.alpha_composite(rgba)
    return im.convert("RGB")


def _unidentified_detail(data: bytes, formats: Sequence[str]) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as other:
            kind = other.format
    except Exception:
        kind = None
    accepted = ", ".join(formats)
    if kind:
        return f"{kind} images are not accepted; send one of {accepted}"
    return f"the upload is not an image this server reads ({accepted})"


def _not_an_image(detail: str) -> ImageError:
    return ImageError(detail, status=415, error="not_an_image")


def _too_many_pixels(detail: str) -> ImageError:
    return ImageError(detail, status=413, error="image_too_large")


def _unreadable(detail: str) -> ImageError:
    return ImageError(detail, status=422, error="unreadable_file")
