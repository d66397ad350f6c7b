"""A decoded Pillow image as the pixels every model and node sees: upright, 8-bit RGB, transparency apart.

One conversion for the runtime's file reader (`stream.image_files`) and the training commands'
(`avatars.style.training.load_image`), so that a style picture is trained on as it is later shown:

- 16-bit samples are scaled (65535 -> 255, rounded; a plain conversion clips them to white), grey,
  palette and CMYK become RGB (CMYK without its ICC profile), EXIF orientation is applied;
- alpha (an alpha channel, or a palette's or grey's transparent colour) is returned separately and
  the RGB under it is composited over a backdrop (white by default): the colours a file keeps under
  fully transparent pixels are undefined, so no processing ever sees them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Backdrop = int | tuple[int, int, int]   # what transparency is composited over: a grey level or an RGB colour
WHITE = 255                # the default backdrop: what viewers show under transparency, what editors flatten onto
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")   # Pillow's 16-bit grey (a 16-bit PNG may read as "I")
_WITH_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
_ORIENTATION = 0x0112                                       # the EXIF tag
_TURNED = (5, 6, 7, 8)                                      # orientations that swap width and height
_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",  # as ImageOps
              6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}                          # .exif_transpose


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


def picture_of(img, target: tuple[int, int] | None = None, stored: tuple[int, int] | None = None,
               backdrop: Backdrop = WHITE) -> Picture:
    """A loaded Pillow image -> Picture: at `target` (W, H as stored; None: its own size), upright,
    8 bits, over `backdrop`; `stored` is the file's size where a draft decoded it smaller.
    Scaled first, in the file's own mode, so that nothing but the decoded pixels is ever full size;
    palettes and transparent colours become RGBA first (their indexes and keys cannot be resampled)."""
    from PIL import Image

    stored = stored or img.size
    target = target or img.size
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
