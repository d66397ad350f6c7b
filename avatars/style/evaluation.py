"""How much the background decides a stylized person's look: the same person composited over
several backgrounds, stylized, compared inside the person.

A stylizer whose statistics come from the whole frame paints one person differently on each
background; one given the person's mask should not. The measure is the mean absolute difference
(grey levels, 0-255, all three channels) inside the person (mask > 0.5) between every pair of
backgrounds; the same measure of the composited inputs is the floor set by the soft mask's edge.
The people are real frames of the project's test clips with MediaPipe's mask; the backgrounds are
black and photographs without people (names relative to the media folder, ../shared/media).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

if TYPE_CHECKING:
    from avatars.core.lpips import LPIPS

PEOPLE_CLIPS = ("hybrik_taiji.mp4", "musepose_dance.mp4", "gvhmr_tennis.mp4", "mmhuman3d_single_person_demo.mp4",
                "romp_sample_video2_exercise.mp4", "iper_023_1_1_turnaround.gif", "kinetics_ta_chi_340x256.mp4")
EMPTY_SCENES = ("tubingen.jpg", "golden_gate.jpg", "chicago.jpg", "hoovertowernight.jpg", "amber.jpg")

Stylize = Callable[[np.ndarray, np.ndarray], np.ndarray]   # (frame, mask) -> stylized frame


@dataclass
class Person:
    clip: str
    frame: np.ndarray      # (S, S, 3) uint8
    mask: np.ndarray       # (S, S) float32 in [0, 1]


def square(image: np.ndarray, size: int) -> np.ndarray:
    """The centred square of ``image``, scaled to ``size``."""
    h, w = image.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return cv2.resize(image[y:y + s, x:x + s], (size, size), interpolation=cv2.INTER_AREA)


def _frame(path: Path, index: int) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return f.to_ndarray(format="rgb24")
    raise ValueError(f"{path}: fewer than {index + 1} frames")


def people(media: Path, size: int = 256, clips: tuple[str, ...] = PEOPLE_CLIPS, index: int = 20) -> list[Person]:
    """Frame ``index`` of each clip (centred square) with MediaPipe's person mask, where it finds one."""
    from avatars.body.pose import PoseConfig, PoseEstimator

    out = []
    with PoseEstimator(PoseConfig(segmentation=True, static_image_mode=True), smoothing=None) as pose:
        for name in clips:
            frame = square(_frame(media / "video" / name, index), size)
            mask = pose.process(frame).mask
            if mask is not None:
                out.append(Person(name, frame, mask))
    return out


def backgrounds(media: Path, size: int = 256, scenes: tuple[str, ...] = EMPTY_SCENES) -> list[np.ndarray]:
    """Black, then each photograph (centred square)."""
    from PIL import Image

    return [np.zeros((size, size, 3), np.uint8)] + [
        square(np.array(Image.open(media / "content" / n).convert("RGB")), size) for n in scenes]


def composite(person: Person, background: np.ndarray) -> np.ndarray:
    """The person over ``background`` (same size) along the soft mask."""
    a = person.mask[..., None].astype(np.float32)
    return (person.frame * a + background * (1 - a)).round().astype(np.uint8)


def person_changes(stylize: Stylize, person: Person, backgrounds: list[np.ndarray],
                   lpips: "LPIPS | None" = None) -> list[float]:
    """Mean grey-level change inside the person between each pair of backgrounds; with an `lpips`
    network (``avatars.core.lpips``) the LPIPS distance inside the person's box instead."""
    inside = person.mask > 0.5
    outputs = [stylize(composite(person, b), person.mask).astype(np.float32) for b in backgrounds]
    if lpips is None:
        return [float(np.abs(a - b)[inside].mean()) for a, b in combinations(outputs, 2)]
    import torch

    from avatars.core.lpips import lpips_in_boxes
    from avatars.core.metrics import person_box

    box = person_box(torch.from_numpy(person.mask)[None])
    images = [torch.from_numpy(o).permute(2, 0, 1)[None] / 255 for o in outputs]
    with torch.no_grad():
        return [float(lpips_in_boxes(lpips, a, b, box)) for a, b in combinations(images, 2)]
