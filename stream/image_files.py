"""Still image files: read one for processing, bounded and correct; write one atomically.

Reading (Pillow, which gives the header's size before decoding, JPEG draft decoding, every mode
and EXIF orientation):

- any mode becomes 8-bit RGB, upright, with alpha apart and the RGB under it over `backdrop`
  (white by default): `avatars.core.pictures`, the conversion the training commands share;
- the size is bounded before decoding: `max_side` scales the picture down (a JPEG is decoded
  at reduced size through draft), more than `MAX_PIXELS` decoded pixels are refused, and so is
  a picture whose smaller side would be under `min_side`;
- a missing file, a folder, a file that is no image, a decompression bomb or a damaged or
  truncated file raise `ImageFileError`, whose message names the file.

Writing (OpenCV, which encodes PNG ~6x faster than Pillow: 31 vs 190 ms a 720p frame, what a
frame sequence needs): the image is encoded in memory, written as PATH.part in the same folder
and renamed to PATH only when complete; a failed write removes the partial file. Formats with
alpha (PNG, WebP, TIFF) keep it; the others (JPEG, BMP) get the RGB composited over `backdrop`.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np

from avatars.core.pictures import WHITE, Backdrop, Picture, over, picture_of

MAX_PIXELS = 100_000_000   # decoded pixels (a 10000x10000 PNG): at most ~400 MB in Pillow's 4 bytes a pixel
MIN_SIDE = 16              # the smaller side a picture must keep by default (stylizers need more than 4 or 32)
#: extension -> whether the format keeps an alpha channel (what `write_image` writes and folders are read for)
WRITE_FORMATS = {".png": True, ".webp": True, ".tif": True, ".tiff": True, ".jpg": False, ".jpeg": False,
                 ".bmp": False}
EXTENSIONS = tuple(WRITE_FORMATS)


class ImageFileError(ValueError):
    """A still image that cannot be read or written as asked; the message names the file."""


def bounded_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(W, H) scaled down so that its longer side is at most `max_side` (0: unchanged), aspect kept."""
    w, h = size
    if not max_side or max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def read_image(path: str | Path, *, max_side: int = 0, min_side: int = MIN_SIDE, max_pixels: int = MAX_PIXELS,
               backdrop: Backdrop = WHITE) -> Picture:
    """The picture of an image file, upright, 8-bit RGB + alpha, within the bounds (module docstring)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise ImageFileError(f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise ImageFileError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS is the bound here
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageFileError(f"{path}: refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageFileError(f"{path}: not an image (or a format Pillow does not read)") from None
    except OSError as exc:
        raise ImageFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with img:
        stored = img.size    # as stored (a TIFF's orientation is applied by Pillow itself); swaps keep the bounds
        target = bounded_size(stored, max_side)
        if min(target) < min_side:
            scaled = f" (scaled from {stored[0]}x{stored[1]} to a maximum side of {max_side})" if target != stored else ""
            raise ImageFileError(f"{path}: {target[0]}x{target[1]} pixels{scaled} is too small; "
                                 f"images need at least {min_side} pixels a side")
        if img.mode == "F":
            raise ImageFileError(f"{path}: 32-bit float pixels have no known range; convert it to 8 or 16 bits")
        if img.format == "JPEG" and target != stored:
            img.draft(img.mode, target)  # decoded at 1/2, 1/4 or 1/8 of the size, still at least `target`
        if img.width * img.height > max_pixels:
            raise ImageFileError(f"{path}: {img.width}x{img.height} is {img.width * img.height / 1e6:.0f} megapixels "
                                 f"to decode; the limit is {max_pixels / 1e6:g} (scale it down first, or give "
                                 f"a maximum side: a JPEG is then decoded at reduced size)")
        try:
            img.load()
            return picture_of(img, target, stored, backdrop)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:  # what Pillow's decoders raise on bad data
            raise ImageFileError(f"{path}: damaged or truncated image ({exc})") from None


def picture_count(path: str | Path) -> int | None:
    """How many pictures Pillow finds in `path` (an animated GIF: several) from its headers alone; None
    where Pillow reads none. Too large a picture still counts: `read_image` says what is wrong with it."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return getattr(img, "n_frames", 1)
    except Image.DecompressionBombError:
        return 1
    except (OSError, SyntaxError, ValueError, EOFError):  # UnidentifiedImageError is an OSError
        return None


def format_problem(path: str | Path) -> str | None:
    """Why `write_image` cannot encode `path`'s type (None: it can)."""
    path = Path(path)
    if path.suffix.lower() not in WRITE_FORMATS:
        return (f"{path}: cannot write images of type {path.suffix or '(no extension)'!r}; "
                f"use {', '.join(EXTENSIONS)}")
    return None


def write_image(path: str | Path, rgb: np.ndarray, alpha: np.ndarray | None = None, *, quality: int = 95,
                backdrop: Backdrop = WHITE) -> None:
    """Write `rgb` (+ `alpha`) to `path` atomically (PATH.part, then a rename); ImageFileError naming
    the file when it cannot, with no partial file left. Missing folders are created."""
    import cv2

    path = Path(path)
    if problem := format_problem(path):
        raise ImageFileError(problem)
    ext = path.suffix.lower()
    if alpha is not None and not WRITE_FORMATS[ext]:
        rgb, alpha = over(rgb, alpha, backdrop), None
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if alpha is None else \
        cv2.cvtColor(np.dstack([rgb, alpha]), cv2.COLOR_RGBA2BGRA)
    ok, data = cv2.imencode(ext, pixels, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise ImageFileError(f"{path}: the {ext} encoder failed")
    partial = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data.tobytes())
        os.replace(partial, path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # none was made where the folder is missing or a file
            partial.unlink()
        raise ImageFileError(f"{path}: cannot write ({exc.strerror or exc})") from None
