"""Safe image decoding: files or uploads -> (3, H, W) uint8 at a model's input size.

    x = load_image("cat.png", 32)                    # any mode and size; ImageError if unusable
    x = decode_upload(png_bytes, (32, 32))           # the service's formats only, HTTP statuses

Decoding matches how ``cnnbench.data`` reads image folders for training: Pillow, RGB,
transparency flattened onto white, resized to the model's input size with bilinear
filtering, aspect ratio not kept (a CIFAR model sees 32x32 exactly as in training).

Files are checked before they are decoded, so a decompression bomb is refused without
allocating it: a byte limit, then a pixel limit read from the header (``Image.open`` reads
the header only). The pixels counted are the ones that will be decoded: a JPEG is decoded
at a reduced scale (libjpeg's DCT scaling, ``Image.draft``, down to 1/8) when the model's
input is smaller, so a 4000 x 3000 photo costs 500 x 375 pixels for a 32 x 32 model, and
the limit is checked on that reduced size. Other formats decode at full size. Every
refusal is one ``ImageError`` whose ``status`` is the HTTP answer: 413 over a limit, 415 not
an image (or a format the service does not take), 422 unreadable or corrupt (a header of
an accepted format that Pillow cannot parse, such as a 0 x 0 PNG, is corrupt, not "not an
image").

Thread safety: ``load_image`` and ``decode_upload`` keep no state; many threads may call
them at once (Pillow releases the GIL while decoding). ``large_decode`` lets a caller wrap
the decoding of a large image in its own context (the service caps how many run at once).
Pillow's own bomb guard (``Image.MAX_IMAGE_PIXELS``, 89 MP: a warning, then an error above
twice that) is left as it is; its ``DecompressionBombError`` is answered as a 413 too.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.inference.errors import ImageError

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "LargeDecode",
    "check_header",
    "decode_upload",
    "expand_inputs",
    "load_image",
]

# 50 MP: larger files named on the command line are refused before decoding. A 50 MP RGB
# image is 150 MB in memory; a crafted 100000 x 100000 PNG header would ask for 30 GB.
# (The service uses a much lower limit: cnnbench.serve.engine.DEFAULT_MAX_PIXELS.)
MAX_PIXELS = 50_000_000
MAX_FILE_BYTES = 100 * 1024 * 1024  # 100 MiB
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")  # what the service takes (decode_upload)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")

# ``large_decode(pixels)`` -> a context the decoding of that many pixels runs in.
LargeDecode = Callable[[int], AbstractContextManager[Any]]


def load_image(
    source: bytes | str | os.PathLike[str],
    size: int | tuple[int, int] | Sequence[int],
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_FILE_BYTES,
) -> np.ndarray:
    """Decode an image file (path or bytes) into a (3, H, W) uint8 array of ``size``.

    Raises ``ImageError`` (one-line reason) for a missing, unreadable, empty, oversized,
    non-image, truncated or corrupt file, and for images over ``max_pixels`` (counted after
    JPEG's reduced-scale decoding). Multi-frame files (GIF, TIFF) use their first frame.
    """
    from PIL import Image, UnidentifiedImageError

    target = _target(size)
    fp = _open_source(source, max_bytes)
    try:
        with Image.open(fp) as im:  # reads the header only
            _reduce_and_check(im, target, max_pixels)
            return _decode(im, target)
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
    data: bytes,
    max_pixels: int = MAX_PIXELS,
    formats: Sequence[str] = ACCEPTED_FORMATS,
    size: int | tuple[int, int] | Sequence[int] | None = None,
) -> str:
    """The format of an upload, from its header alone; ``ImageError`` 415 / 413 / 422 if bad.

    With ``size`` (the model's input), a JPEG's pixels are counted at the reduced scale it
    would be decoded at; without it, at full size.
    """
    with _open_upload(data, formats) as im:
        if size is None:
            _check_pixels(*im.size, max_pixels)
        else:
            _reduce_and_check(im, _target(size), max_pixels)
        return str(im.format)


def decode_upload(
    data: bytes,
    size: int | tuple[int, int] | Sequence[int],
    *,
    max_pixels: int = MAX_PIXELS,
    formats: Sequence[str] = ACCEPTED_FORMATS,
    large_decode: LargeDecode | None = None,
) -> np.ndarray:
    """Uploaded bytes -> (3, H, W) uint8. The header is checked first, in the same open
    (415 / 413 / 422 as ``check_header``); an image that then fails to decode is a 422
    ``corrupt_image``. ``large_decode(pixels)``, if given, is the context the decoding runs
    in (the service caps concurrent large decodes with it)."""
    target = _target(size)
    with _open_upload(data, formats) as im:
        fmt = im.format
        _reduce_and_check(im, target, max_pixels)
        gate = large_decode(im.size[0] * im.size[1]) if large_decode else nullcontext()
        try:
            with gate:
                return _decode(im, target)
        except MemoryError:
            raise
        except Exception as e:  # Pillow raises many types for broken pixel data
            detail = f"corrupt or truncated image data ({e})"
            raise ImageError(f"cannot decode the {fmt} image: {detail}") from None


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


def _target(size: int | tuple[int, int] | Sequence[int]) -> tuple[int, int]:
    """(width, height) of a ``size`` given as an int or as (height, width)."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(w), int(h)


def _open_upload(data: bytes, formats: Sequence[str]) -> Any:
    """``Image.open`` of uploaded bytes restricted to ``formats``: header only, no pixels."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise _not_an_image("the upload is empty")
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as e:
        raise _too_many_pixels(str(e)) from None
    except UnidentifiedImageError:
        fmt = _signature(data)
        if fmt in formats:  # Pillow's plugins refuse a malformed header as "unidentified"
            raise ImageError(f"the {fmt} header is invalid (bad size or fields)") from None
        raise _not_an_image(_unidentified_detail(data, formats)) from None
    except Exception as e:  # a header that parses as a format but is malformed
        raise ImageError(f"cannot read the image header ({e})") from None


def _reduce_and_check(im: Any, target: tuple[int, int], max_pixels: int) -> None:
    """Ask for reduced-scale decoding (JPEG only: ``draft`` is a no-op for other formats),
    then refuse the image if what will be decoded is empty or over ``max_pixels``."""
    if 0 in im.size:
        raise ImageError(f"image has no pixels ({im.size[0]} x {im.size[1]})")
    im.draft("RGB", target)  # JPEG: scale 1/2, 1/4 or 1/8 while staying >= target
    _check_pixels(*im.size, max_pixels)


def _decode(im: Any, target: tuple[int, int]) -> np.ndarray:
    """The pixels of an opened image at ``target`` (w, h), as (3, H, W) uint8. Each full-size
    copy is freed as soon as the next one exists (``close`` releases Pillow's pixels now,
    not when the caller's ``with`` ends)."""
    from PIL import Image

    im.load()
    rgb = _flatten_to_rgb(im)
    im.close()
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()


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
    if width == 0 or height == 0:
        raise ImageError(f"image has no pixels ({width} x {height})")
    if width * height > max_pixels:
        raise _too_many_pixels(
            f"{width} x {height} = {width * height / 1e6:.3g} MP is over the "
            f"{max_pixels / 1e6:.3g} MP limit ({max_pixels:,} pixels)"
        )


def _flatten_to_rgb(im: Any) -> Any:
    """RGB Pillow image of any mode: alpha onto white, 16-bit and 32-bit integers scaled to
    8 bits, floats in [0, 1] or [0, 255] too."""
    from PIL import Image

    if im.mode in _SIXTEEN_BIT or im.mode == "I":
        a = np.asarray(im).astype(np.int64)
        # "I" (32-bit) is how Pillow opens some 16-bit files: scale only if values exceed 8 bits.
        if im.mode in _SIXTEEN_BIT or (a.size and a.max() > 255):
            a = (2 * a + 257) // 514  # round(a / 257) in integers: exact, no float64 copy
        im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        a = a * 255.0 if a.size and a.max() <= 1.0 else a  # floats in [0, 1] or [0, 255]
        im = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "L")
    transparent = im.mode in ("RGBA", "LA", "PA", "La", "RGBa")
    if transparent or (im.mode == "P" and "transparency" in im.info):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")  # no needless full-size copy
        im = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im.alpha_composite(rgba)
        del rgba
    return im.convert("RGB")


def _signature(data: bytes) -> str | None:
    """The accepted format whose magic bytes ``data`` starts with, if any."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM" and len(data) >= 14 and data[6:10] == b"\0\0\0\0":
        return "BMP"
    return None


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
