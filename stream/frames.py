"""Frame arithmetic the compositing nodes share: fitting an image to a size, masks as alpha,
alpha blending, any video message as RGB, and the statistics overlay.

    out = I * M + B * (1 - M)        (I foreground RGB, M mask in [0, 1], B background)

Fitting reconciles sizes by stretching (resize), fitting inside with bars (letterbox) or filling
and cropping (cover). Masks may be uint8 (0..255) or float (0..1) and any size.
"""
from __future__ import annotations

import time
from typing import Literal

import numpy as np

from stream.message import Message
from stream.node import NodeError

Fit = Literal["resize", "letterbox", "cover"]


def fit(image: np.ndarray, height: int, width: int, mode: Fit, color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """`image` (HxWx3 uint8) brought to height x width: stretched, letterboxed or cover-cropped."""
    import cv2

    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    if mode == "resize":
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if w > width else cv2.INTER_LINEAR)
    scale = (min if mode == "letterbox" else max)(height / h, width / w)
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    scaled = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if mode == "cover":
        y, x = (sh - height) // 2, (sw - width) // 2
        return scaled[y:y + height, x:x + width]
    out = np.empty((height, width, 3), np.uint8)
    out[:] = color
    y, x = (height - sh) // 2, (width - sw) // 2
    out[y:y + sh, x:x + sw] = scaled
    return out


def as_alpha(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A float32 HxW mask in [0, 1] from a uint8 (0..255) or float mask of any size (HxW or HxWx1)."""
    import cv2

    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    alpha = mask.astype(np.float32) * (1 / 255) if mask.dtype == np.uint8 else mask.astype(np.float32)
    if alpha.shape != (height, width):
        alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(alpha, 0.0, 1.0)


def blend(foreground: np.ndarray, alpha: np.ndarray, background: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = round(I*M + B*(1-M)), computed as B + (I - B)*M in float32."""
    fg, bg = foreground.astype(np.float32), background.astype(np.float32)
    result = bg + (fg - bg) * alpha[..., None]
    np.rint(result, out=result)
    np.clip(result, 0, 255, out=result)
    out[:] = result
    return out


def as_rgb(msg: Message) -> np.ndarray:
    """A message's picture as HxWx3 uint8: its image, else its mask shown in grey."""
    if "image" in msg.buffers:
        image = np.asarray(msg.buffers["image"])
    elif "mask" in msg.buffers:
        mask = np.asarray(msg.buffers["mask"])
        image = mask if mask.dtype == np.uint8 else (np.clip(mask, 0, 1) * 255).astype(np.uint8)
    else:
        raise NodeError(f"message on stream {msg.stream!r} has no image or mask to show (has {sorted(msg.buffers)})")
    if image.ndim == 2 or image.shape[2] == 1:
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    return image


class StatsOverlay:
    """Draws the output rate and the capture-to-here latency in a corner of a frame."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.fps = 0.0

    def draw(self, image: np.ndarray, capture_ts: float) -> None:
        import cv2

        now = time.perf_counter()
        if self.last is not None:
            rate = 1 / max(now - self.last, 1e-6)
            self.fps = rate if self.fps == 0 else 0.9 * self.fps + 0.1 * rate
        self.last = now
        text = f"{self.fps:5.1f} fps  {(time.time() - capture_ts) * 1e3:6.1f} ms"
        scale = max(0.4, image.shape[0] / 720)
        for color, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(image, text, (8, int(24 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, color, thickness,
                        cv2.LINE_AA)
