"""Content sets from video: the frames a live stylizer will see, sampled from clips of people.

The shipped styles were trained on 14 photographs; a stylizer for people on live video should see
people on video. ``extract_frames`` samples every clip of a folder at a fixed interval, scaled down
to ``max_side``, and writes JPEGs that ``training.ContentCrops`` reads like any folder of photos.
The clip the stylizers are evaluated on stays out (``HELD_OUT``: bench/stylize.py and bench/flicker.py
measure loss and flicker on it), so evaluation frames are never training frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif"}
HELD_OUT = ("hybrik_taiji.mp4",)


@dataclass
class ExtractConfig:
    every_s: float = 0.5                     # one frame per this many seconds of video
    max_side: int = 512                      # longer side of the written frames, pixels
    hold_out: tuple[str, ...] = HELD_OUT     # clip file names never sampled
    quality: int = 92                        # JPEG quality

    def __post_init__(self):
        if self.every_s <= 0 or self.max_side < 16:
            raise ValueError("every_s must be > 0 and max_side >= 16")


@dataclass
class Extracted:
    frames: list[Path] = field(default_factory=list)
    clips: list[str] = field(default_factory=list)
    held_out: list[str] = field(default_factory=list)


def list_videos(folder: str | Path) -> list[Path]:
    """The video files directly in ``folder`` (sub-folders are not searched)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def _scaled(frame: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    s = max_side / max(h, w)
    return frame if s >= 1 else cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def extract_frames(videos: list[Path], out: str | Path, cfg: ExtractConfig = ExtractConfig()) -> Extracted:
    """Frames every ``cfg.every_s`` seconds of each video (held-out clips skipped) as ``out/<clip>_<n>.jpg``."""
    import av
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = Extracted()
    for video in videos:
        if video.name in cfg.hold_out:
            result.held_out.append(video.name)
            continue
        next_t = 0.0
        with av.open(str(video)) as c:
            stream = c.streams.video[0]
            for i, frame in enumerate(c.decode(stream)):
                t = float(frame.time) if frame.time is not None else i / float(stream.average_rate or 30)
                if t + 1e-6 < next_t:
                    continue
                next_t = t + cfg.every_s
                path = out / f"{video.stem}_{i:05d}.jpg"
                Image.fromarray(_scaled(frame.to_ndarray(format="rgb24"), cfg.max_side)).save(path, quality=cfg.quality)
                result.frames.append(path)
        result.clips.append(video.name)
    return result


# -- people over backgrounds ------------------------------------------------------------------

@dataclass
class CompositeConfig:
    seed: int = 0                    # background choice, crop and flip
    quality: int = 92                # JPEG quality


def _background(rng: np.random.Generator, photo: np.ndarray, size: int) -> np.ndarray:
    """A random square crop of ``photo`` (at least half its short side), scaled to ``size``, maybe mirrored."""
    import cv2

    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = cv2.resize(photo[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def composite_people(people: list[tuple[str, np.ndarray, np.ndarray]], backgrounds: list[np.ndarray],
                     out: str | Path, cfg: CompositeConfig = CompositeConfig()) -> list[Path]:
    """Each (name, RGB uint8, mask float in [0, 1]) person over a random crop of a random background,
    blended along the soft mask, as ``out/<name>.jpg``: the avatar and mannequin frames a stylizer
    downstream of the avatar node sees, on the varied scenes it sees them on."""
    from PIL import Image

    if not backgrounds:
        raise ValueError("composite_people needs at least one background")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    paths = []
    for name, rgb, mask in people:
        scene = _background(rng, backgrounds[int(rng.integers(len(backgrounds)))], rgb.shape[0])
        a = mask[..., None].astype(np.float32)
        image = (a * rgb + (1 - a) * scene).round().astype(np.uint8)
        paths.append(out / f"{name}.jpg")
        Image.fromarray(image).save(paths[-1], quality=cfg.quality)
    return paths
