"""Pose extraction with MediaPipe Pose, temporal smoothing, gap policy, and the pose file format.

* ``PoseEstimator``: MediaPipe Pose (``model_complexity=1``; the model ships in the
  mediapipe wheel, nothing is downloaded) on RGB uint8 frames -> ``PoseResult`` with
  keypoints in the project convention (``avatars.body.skeleton``), world landmarks (metres,
  MediaPipe's frame: origin at the hip midpoint, axes image-aligned, y down), an optional
  person mask, and a ``detected`` flag. MediaPipe's own landmark smoothing is off so the
  One-Euro filter here is the single, parameterised smoother.
* ``OneEuroFilter`` (Casiez et al., CHI 2012): an adaptive low-pass whose cutoff rises
  with speed - steady when still, little lag when moving.
* ``GapFiller``: what downstream sees on frames with no person: hold the last pose (for
  a while) or blank (all visibilities 0, so the bone stack is empty).
* ``PoseTrack`` + ``save_poses``/``load_poses``: the offline file (npz, no pickle).
* ``extract_poses``: a video file -> a pose file, with a progress bar and a report.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Literal

import av
import numpy as np
from tqdm import tqdm

from avatars.body.skeleton import NUM_LANDMARKS

POSE_FILE_FORMAT = "avatars.poses/1"
log = logging.getLogger(__name__)
#: MediaPipe's start-up lines: TFLite's "INFO: ...", absl's preamble and its glog-style lines (W0000 00:00...)
_NATIVE_LINE = re.compile(r"^(INFO: |WARNING: All log messages before absl|[IWEF]\d{4} )")


@contextlib.contextmanager
def _native_log_to_logging() -> Iterator[None]:
    """MediaPipe's C++ side (absl, TFLite) writes its start-up lines straight to file descriptor 2,
    where neither GLOG_minloglevel nor TF_CPP_MIN_LOG_LEVEL reach: catch what fd 2 gets while its
    graph starts and hand it to `logging`, its own lines at debug level (``--log-level debug``),
    anything else (another thread's) as a warning, so nothing is lost."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines():
                log.log(logging.DEBUG if _NATIVE_LINE.match(line) else logging.WARNING, "%s", line)


@dataclass(frozen=True)
class PoseConfig:
    """MediaPipe Pose settings (see ``mediapipe.solutions.pose.Pose``)."""

    model_complexity: int = 1
    segmentation: bool = False
    static_image_mode: bool = False
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5


@dataclass(frozen=True)
class OneEuroConfig:
    """One-Euro parameters, for coordinates in frame widths (image) and metres (world).

    min_cutoff: cutoff (Hz) at rest - lower is steadier. beta: cutoff increase per unit/s
    of speed - higher lags less on fast moves. d_cutoff: cutoff (Hz) for the speed estimate.
    """

    min_cutoff: float = 1.0
    beta: float = 10.0
    d_cutoff: float = 1.0


class OneEuroFilter:
    """Element-wise One-Euro filter over arrays of a fixed shape; ``reset`` forgets the past."""

    def __init__(self, config: OneEuroConfig = OneEuroConfig()) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filtered value of ``x`` observed at time ``t`` (seconds, increasing)."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        if dt <= 0:  # repeated timestamp: nothing new to integrate
            return self._x.copy()
        c = self.config
        dx = (x - self._x) / dt
        self._dx = self._dx + self._alpha(c.d_cutoff, dt) * (dx - self._dx)
        cutoff = c.min_cutoff + c.beta * np.abs(self._dx)
        self._x = self._x + self._alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x.copy()


@dataclass(frozen=True)
class PoseResult:
    """One frame's pose. ``keypoints`` (33, 4) float32 in the project convention.

    detected: a person was found in this frame. held: the keypoints are a held earlier
    pose (``GapFiller``), not this frame's. mask: person probability (H, W) float32 when
    segmentation is on and a person was found, else None.
    """

    keypoints: np.ndarray
    world: np.ndarray
    detected: bool
    pts: float
    frame_size: tuple[int, int]  # (width, height)
    mask: np.ndarray | None = None
    held: bool = False


def empty_pose(pts: float, frame_size: tuple[int, int]) -> PoseResult:
    """A no-person result: zero coordinates and visibility 0 (draws an empty bone stack)."""
    return PoseResult(np.zeros((NUM_LANDMARKS, 4), np.float32), np.zeros((NUM_LANDMARKS, 3), np.float32),
                      False, pts, frame_size)


class PoseEstimator:
    """MediaPipe Pose over a stream of RGB frames (one person), smoothed with One-Euro.

    ``smoothing=None`` disables smoothing. Frames without a person reset the filter, so a
    re-detected person does not glide in from where they were lost. Timestamps ``pts``
    (seconds) drive the filter; without them frames are assumed 1/30 s apart.
    """

    def __init__(self, config: PoseConfig = PoseConfig(), smoothing: OneEuroConfig | None = OneEuroConfig()) -> None:
        import mediapipe as mp  # heavy import, only where poses are actually extracted

        self.config = config
        # its graph's threads print their start-up lines from here to the end of the first frame
        self._start_up = contextlib.ExitStack()
        self._start_up.enter_context(_native_log_to_logging())
        self._pose = mp.solutions.pose.Pose(
            static_image_mode=config.static_image_mode, model_complexity=config.model_complexity,
            smooth_landmarks=False, enable_segmentation=config.segmentation,
            min_detection_confidence=config.min_detection_confidence,
            min_tracking_confidence=config.min_tracking_confidence)
        self._filter = OneEuroFilter(smoothing) if smoothing is not None else None
        self._frames = 0

    def process(self, rgb: np.ndarray, pts: float | None = None) -> PoseResult:
        """Pose of one RGB uint8 ``(H, W, 3)`` frame."""
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
            got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise ValueError(f"PoseEstimator.process needs an RGB uint8 array (H, W, 3), got {got}")
        pts = self._frames / 30.0 if pts is None else float(pts)
        self._frames += 1
        h, w = rgb.shape[:2]
        r = self._pose.process(np.ascontiguousarray(rgb))
        self._start_up.close()  # once: fd 2 is the terminal's again
        if r.pose_landmarks is None:
            if self._filter is not None:
                self._filter.reset()
            return empty_pose(pts, (w, h))
        lm = np.array([(p.x, p.y, p.z, p.visibility) for p in r.pose_landmarks.landmark], np.float64)
        world = np.array([(p.x, p.y, p.z) for p in r.pose_world_landmarks.landmark], np.float64)
        if self._filter is not None:  # filter in frame widths / metres, units that do not depend on resolution
            joint = self._filter(np.concatenate([lm[:, :3] * (1.0, h / w, 1.0), world], axis=1), pts)
            lm[:, :3], world = joint[:, :3] / (1.0, h / w, 1.0), joint[:, 3:]
        keypoints = (lm * (w, h, w, 1.0)).astype(np.float32)
        mask = r.segmentation_mask.astype(np.float32) if r.segmentation_mask is not None else None
        return PoseResult(keypoints, world.astype(np.float32), True, pts, (w, h), mask)

    def close(self) -> None:
        self._start_up.close()
        self._pose.close()

    def __enter__(self) -> "PoseEstimator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GapFiller:
    """Policy for frames with no person: ``"hold"`` the last detected pose for up to
    ``max_hold_s`` seconds (then blank), or ``"blank"`` at once. Detected frames pass through."""

    def __init__(self, policy: Literal["hold", "blank"] = "hold", max_hold_s: float = 0.5) -> None:
        if policy not in ("hold", "blank"):
            raise ValueError(f"gap policy must be 'hold' or 'blank', got {policy!r}")
        self.policy, self.max_hold_s = policy, max_hold_s
        self._last: PoseResult | None = None

    def __call__(self, result: PoseResult) -> PoseResult:
        if result.detected:
            self._last = result
            return result
        last = self._last
        if self.policy == "hold" and last is not None and result.pts - last.pts <= self.max_hold_s:
            return replace(result, keypoints=last.keypoints, world=last.world, held=True)
        return empty_pose(result.pts, result.frame_size)


class PoseFileError(ValueError):
    """A pose file is missing a field or has one of the wrong shape or type."""


@dataclass(frozen=True)
class PoseTrack:
    """Poses of a whole video: what the pose file holds. T frames."""

    keypoints: np.ndarray  # (T, 33, 4) float32, project convention
    world: np.ndarray  # (T, 33, 3) float32, metres
    detected: np.ndarray  # (T,) bool
    pts: np.ndarray  # (T,) float64 seconds
    frame_size: tuple[int, int]  # (width, height)
    fps: float
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        t = len(self.detected)
        want = {"keypoints": ((t, NUM_LANDMARKS, 4), np.floating), "world": ((t, NUM_LANDMARKS, 3), np.floating),
                "detected": ((t,), np.bool_), "pts": ((t,), np.floating)}
        for name, (shape, kind) in want.items():
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.shape != shape or not np.issubdtype(arr.dtype, kind):
                got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
                raise PoseFileError(f"{self.source}: field {name!r} must be {kind.__name__} {shape}, got {got}")
        if len(self.frame_size) != 2 or min(self.frame_size) <= 0:
            raise PoseFileError(f"{self.source}: field 'frame_size' must be (width, height) > 0, got {self.frame_size}")

    def __len__(self) -> int:
        return len(self.detected)

    @property
    def detection_rate(self) -> float:
        return float(self.detected.mean()) if len(self) else 0.0

    @classmethod
    def from_results(cls, results: list[PoseResult], fps: float, frame_size: tuple[int, int]) -> "PoseTrack":
        def stack(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
            return np.array([getattr(r, name) for r in results], dtype).reshape(len(results), *shape)

        return cls(stack("keypoints", (NUM_LANDMARKS, 4), np.float32), stack("world", (NUM_LANDMARKS, 3), np.float32),
                   stack("detected", (), np.bool_), stack("pts", (), np.float64), frame_size, fps)


def save_poses(path: str | Path, track: PoseTrack) -> None:
    """Write ``track`` as a compressed npz (plain arrays only, loadable without pickle), as PATH.part
    renamed to PATH once complete: a failed write never leaves a file that looks like poses."""
    partial = Path(f"{path}.part")
    try:
        with open(partial, "wb") as f:  # a file object keeps numpy from appending ".npz" to the name
            np.savez_compressed(f, format=np.array(POSE_FILE_FORMAT), keypoints=track.keypoints, world=track.world,
                                detected=track.detected, pts=track.pts,
                                frame_size=np.array(track.frame_size, np.int64), fps=np.array(track.fps, np.float64))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def load_poses(path: str | Path) -> PoseTrack:
    """Read a pose file, validating every field; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pose file not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:
        raise PoseFileError(f"{path}: not a pose file (npz): {e}") from e
    with data:
        missing = {"format", "keypoints", "world", "detected", "pts", "frame_size", "fps"} - set(data.files)
        if missing:
            raise PoseFileError(f"{path}: missing field(s) {', '.join(sorted(missing))}")
        fields = {}
        for name in data.files:
            try:
                fields[name] = data[name]
            except ValueError as e:  # e.g. an object array, which would need pickle
                raise PoseFileError(f"{path}: field {name!r} cannot be read: {e}") from e
    if str(fields["format"]) != POSE_FILE_FORMAT:
        raise PoseFileError(f"{path}: field 'format' is {str(fields['format'])!r}, expected {POSE_FILE_FORMAT!r}")
    size = fields["frame_size"]
    if size.shape != (2,):
        raise PoseFileError(f"{path}: field 'frame_size' must have shape (2,), got {size.shape}")
    return PoseTrack(fields["keypoints"], fields["world"], fields["detected"], fields["pts"],
                     (int(size[0]), int(size[1])), float(fields["fps"]), source=str(path))


@dataclass(frozen=True)
class ExtractStats:
    """Outcome of ``extract_poses``: detection rate and MediaPipe time per frame (ms)."""

    frames: int
    detected: int
    pose_ms_per_frame: float
    wall_s: float

    @property
    def detection_rate(self) -> float:
        return self.detected / self.frames if self.frames else 0.0


def extract_poses(video_path: str | Path, out_path: str | Path | None, smoothing: OneEuroConfig | None = OneEuroConfig(),
                  progress: bool = True, config: PoseConfig = PoseConfig(),
                  max_frames: int | None = None) -> ExtractStats:
    """Run pose extraction on every frame of a video (PyAV decode), save the track to ``out_path``.

    ``progress``: a progress bar; the detection rate is logged (debug) and returned. ``out_path=None`` skips
    writing (measurements). ``max_frames`` stops early.
    """
    video_path = Path(video_path)
    if not video_path.is_file():
        raise FileNotFoundError(f"video not found: {video_path}")
    try:
        container = av.open(str(video_path))
    except av.error.FFmpegError as e:
        raise ValueError(f"{video_path}: cannot open as a video: {e}") from e
    results: list[PoseResult] = []
    pose_s = 0.0
    start = time.perf_counter()
    with container, PoseEstimator(config, smoothing) as estimator:
        if not container.streams.video:
            raise ValueError(f"{video_path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        total = stream.frames or None
        if max_frames is not None:
            total = min(total or max_frames, max_frames)
        bar = tqdm(total=total, unit="frame", desc=video_path.name, disable=not progress)
        for i, frame in enumerate(container.decode(stream)):
            if max_frames is not None and i >= max_frames:
                break
            rgb = frame.to_ndarray(format="rgb24")
            pts = frame.time if frame.time is not None else i / (fps or 30.0)
            t0 = time.perf_counter()
            results.append(estimator.process(rgb, pts))
            pose_s += time.perf_counter() - t0
            bar.update(1)
        bar.close()
    if not results:
        raise ValueError(f"{video_path}: no video frames decoded")
    track = PoseTrack.from_results(results, fps, results[0].frame_size)
    if out_path is not None:
        save_poses(out_path, track)
    stats = ExtractStats(len(results), int(track.detected.sum()), 1e3 * pose_s / len(results),
                         time.perf_counter() - start)
    log.debug("%s: person detected in %d/%d frames (%.1f%%), pose %.1f ms/frame%s", video_path.name, stats.detected,
              stats.frames, 100 * stats.detection_rate, stats.pose_ms_per_frame, f" -> {out_path}" if out_path else "")
    return stats
