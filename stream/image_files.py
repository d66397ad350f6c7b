"""Still image files: read one for processing, bounded and correct; write one atomically.

Reading (Pillow, which gives the header's size before decoding, JPEG draft decoding, every mode
and EXIF orientation):

- any mode becomes 8-bit RGB: 16-bit samples are scaled (65535 -> 255), grey, palette and CMYK
  are converted (CMYK without its ICC profile), EXIF orientation is applied;
- alpha (an alpha channel, or a palette's or grey's transparent colour) is returned separately,
  and the RGB under it is composited over `backdrop` (white by default): the colours a file
  keeps under fully transparent pixels are undefined, so no processing ever sees them;
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_PIXELS = 100_000_000   # decoded pixels (a 10000x10000 PNG): at most ~400 MB in Pillow's 4 bytes a pixel
MIN_SIDE = 16              # the smaller side a picture must keep by default (stylizers need more than 4 or 32)
Backdrop = int | tuple[int, int, int]   # what transparency is composited over: a grey level or an RGB colour
WHITE = 255                # the default backdrop: what viewers show under transparency, what editors flatten onto
#: extension -> whether the format keeps an alpha channel (what `write_image` writes and folders are read for)
WRITE_FORMATS = {".png": True, ".webp": True, ".tif": True, ".tiff": True, ".jpg": False, ".jpeg": False,
                 ".bmp": False}
EXTENSIONS = tuple(WRITE_FORMATS)
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")   # Pillow's 16-bit grey (a 16-bit PNG may read as "I")
_WITH_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
_ORIENTATION = 0x0112                                       # the EXIF tag
_TURNED = (5, 6, 7, 8)                                      # orientations that swap width and height
_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",  # as ImageOps
              6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}                          # .exif_transpose


class ImageFileError(ValueError):
    """A still image that cannot be read or written as asked; the message names the file."""


@dataclass(frozen=True)
class Picture:
    """A decoded still: `rgb` (H, W, 3) uint8 composited over the backdrop where `alpha` (H, W)
    uint8 is under 255 (None: the file has no transparency); `source_size` the file's upright (W, H)."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    source_size: tuple[int, int]

    @property
    def scaled(self) -> bool:
        return self.source_size != (self.rgb.shape[1], self.rgb.shape[0])


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
            return _picture(img, target, stored, backdrop)
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


def _picture(img, target: tuple[int, int], stored: tuple[int, int], backdrop: Backdrop) -> Picture:
    """A loaded Pillow image -> Picture: at `target` (W, H as stored), upright, 8 bits, over `backdrop`.
    Scaled first, in the file's own mode, so that nothing but the decoded pixels is ever full size;
    palettes and transparent colours become RGBA first (their indexes and keys cannot be resampled)."""
    from PIL import Image

    orientation = img.getexif().get(_ORIENTATION, 1)  # after loading, as ImageOps.exif_transpose reads it
    source = stored[::-1] if orientation in _TURNED else stored
    if "transparency" in img.info or img.mode in ("P", "PA", "1"):
        img = _eight_bit(img) if img.mode in _SIXTEEN_BIT else img.convert("RGBA" if _has_alpha(img) else "RGB")
    if img.size != target:
        img = img.resize(target, Image.LANCZOS, reducing_gap=3.0)  # RGBA and LA are resampled premultiplied
    if orientation in _TRANSPOSE:
        img = img.transpose(Image.Transpose[_TRANSPOSE[orientation]])
    if img.mode in _SIXTEEN_BIT:
        img = _eight_bit(img)
    alpha = _has_alpha(img)
    if img.mode != ("RGBA" if alpha else "RGB"):
        img = img.convert("RGBA" if alpha else "RGB")
    pixels = np.asarray(img)
    if not alpha:
        return Picture(pixels, None, source)
    return Picture(over(pixels[..., :3], pixels[..., 3], backdrop), pixels[..., 3].copy(), source)


def _has_alpha(img) -> bool:
    return img.mode in _WITH_ALPHA or "transparency" in img.info


def _eight_bit(img):
    """16-bit grey (Pillow's I;16 or I) -> L, 65535 -> 255 rounded; LA where a grey is the transparent one."""
    from PIL import Image

    grey = np.asarray(img).astype(np.uint32).clip(0, 65535)
    out = Image.fromarray(((grey * 255 + 32767) // 65535).astype(np.uint8), "L")
    key = img.info.get("transparency")
    if isinstance(key, int):
        out.putalpha(Image.fromarray(np.where(grey == key, 0, 255).astype(np.uint8), "L"))
    return out


def over(rgb: np.ndarray, alpha: np.ndarray, backdrop: Backdrop = WHITE) -> np.ndarray:
    """`rgb` (H, W, 3) uint8 composited by `alpha` (H, W) uint8 over `backdrop`, rounded."""
    a = alpha.astype(np.uint32)[..., None]
    return ((rgb * a + np.asarray(backdrop, np.uint32) * (255 - a) + 127) // 255).astype(np.uint8)


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
