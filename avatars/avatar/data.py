"""Training data for avatars: person-centred crops with keypoints and masks, cached in a folder.

A dataset folder holds ``frames.npz`` (``rgb`` (N, S, S, 3) uint8, ``mask`` (N, S, S) uint8
0-255, ``keypoints`` (N, 33, 4) float32 in crop pixels, ``source_index`` (N,) int; mannequin
sets also ``part`` (N, S, S) int8, -1 off the body, and ``uv`` (N, S, S, 2) uint16 = uv * 65535,
the exact part map and surface coordinates) and ``meta.json`` (where the frames came from, the
crop, the splits). Two producers:

* ``make_mannequin_dataset``: renders of the synthetic mannequin (fully the project's own
  data; exact masks, keypoints, part and UV maps: the DensePose targets of the paper's
  initialisation, without DensePose's errors), several motions seen from several orbit angles,
  rendered at twice the crop size and area-downsampled (anti-aliased ground truth).
* ``prepare_video``: a real video decoded with PyAV, MediaPipe Pose with its person
  segmentation on every frame; frames without a person are skipped. One torso length
  (the median over the video) sets the crop side for every frame, so the person keeps one
  scale throughout (the avatar is scale-sensitive); the crop follows the hips. The result
  is cached: a second call with the same video and settings returns at once.

Both crop with ``avatars.avatar.crop`` exactly as the run-time renderer does.
``AvatarDataset`` loads a folder (or one split of it) and makes batches of bone stacks,
images and masks as torch tensors.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np
import torch
from tqdm import tqdm

from avatars.avatar.crop import CropConfig, person_crop, torso_length
from avatars.body.bones import BoneStyle, rasterize_bones_torch
from avatars.body.mannequin import Camera, MannequinSequence
from avatars.body.pose import PoseConfig, PoseEstimator
from avatars.body.skeleton import NUM_PARTS

DATA_FORMAT = "avatars.avatar.data/1"


def _write(out: Path, rgb: list, mask: list, keypoints: list, source_index: list, meta: dict, **maps: list) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    if not rgb:
        raise ValueError(f"no frames with a person for {out}")
    tmp = out / "frames.tmp.npz"
    np.savez(tmp, rgb=np.stack(rgb), mask=np.stack(mask), keypoints=np.stack(keypoints).astype(np.float32),
             source_index=np.asarray(source_index, np.int64), **{k: np.stack(v) for k, v in maps.items()})
    tmp.replace(out / "frames.npz")
    (out / "meta.json").write_text(json.dumps({"format": DATA_FORMAT, "frames": len(rgb), **meta}, indent=1) + "\n")
    return out


def make_mannequin_dataset(out: str | Path, motions: tuple[str, ...], angles: tuple[float, ...],
                           frames_per_clip: int = 60, fps: float = 15.0, crop: CropConfig = CropConfig(),
                           render_size: int | None = None, seed: int = 0, progress: bool = True) -> Path:
    """Render every motion from every orbit angle (degrees) and store the person crops with their
    exact part and UV maps (``render_size`` default: twice the crop size)."""
    render_size = render_size or 2 * crop.size
    rgb, mask, kps, index, clips, part, uv = [], [], [], [], [], [], []
    total = len(motions) * len(angles) * frames_per_clip
    bar = tqdm(total=total, desc="mannequin", unit="frame", disable=not progress)
    for motion in motions:
        for angle in angles:
            seq = MannequinSequence(motion, frames_per_clip, fps,
                                    Camera.orbit(angle, width=render_size, height=render_size), seed=seed)
            clips.append({"motion": motion, "angle": angle, "start": len(rgb)})
            for i, f in enumerate(seq):
                bar.update(1)
                c = person_crop(f.joints2d, crop)
                if c is None:
                    continue
                rgb.append(c.cut(f.rgb * f.mask[..., None], crop.size))
                mask.append(c.cut(f.mask.astype(np.uint8) * 255, crop.size))
                # labels and uv are never blended; part + 1 so that outside the frame reads background
                part.append(c.cut((f.part + 1).astype(np.uint8), crop.size, cv2.INTER_NEAREST).astype(np.int8) - 1)
                uv.append(c.cut((f.uv * 65535 + 0.5).astype(np.uint16), crop.size, cv2.INTER_NEAREST))
                kps.append(c.keypoints(f.joints2d, crop.size))
                index.append(i)
    bar.close()
    meta = {"source": "mannequin", "motions": list(motions), "angles": list(angles), "fps": fps,
            "frames_per_clip": frames_per_clip, "render_size": render_size, "seed": seed,
            "crop": dataclasses.asdict(crop), "clips": clips}
    return _write(Path(out), rgb, mask, kps, index, meta, part=part, uv=uv)


def _video_key(video: Path, crop: CropConfig, max_frames: int | None, holdout: float) -> str:
    st = video.stat()
    text = json.dumps([str(video.resolve()), st.st_size, st.st_mtime_ns, dataclasses.asdict(crop), max_frames, holdout])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextmanager
def _open(video: Path) -> Iterator[av.video.stream.VideoStream]:
    try:
        container = av.open(str(video))
    except av.error.FFmpegError as e:
        raise ValueError(f"{video}: cannot open as a video: {e}") from e
    with container:
        if not container.streams.video:
            raise ValueError(f"{video}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield stream


def _count(stream: av.video.stream.VideoStream, max_frames: int | None) -> int | None:
    total = stream.frames or None
    return min(total or max_frames, max_frames) if max_frames is not None else total


def _frames(stream: av.video.stream.VideoStream, max_frames: int | None) -> Iterator[av.VideoFrame]:
    for i, frame in enumerate(stream.container.decode(stream)):
        if max_frames is not None and i >= max_frames:
            return
        yield frame


def prepare_video(video: str | Path, out: str | Path, crop: CropConfig = CropConfig(), holdout: float = 0.2,
                  max_frames: int | None = None, progress: bool = True) -> Path:
    """Frames + MediaPipe pose + person masks of a video -> a dataset folder (cached).

    The last ``holdout`` share of the frames (in time) is the ``test`` split, the rest ``train``.
    Masks are MediaPipe's segmentation probability (the paper also adds the skeleton's pixels to
    its masks; we do not). Two decoding passes, so no more than the masks is held in memory.
    """
    video, out = Path(video), Path(out)
    if not video.is_file():
        raise FileNotFoundError(f"video not found: {video}")
    if not 0 <= holdout < 1:
        raise ValueError("holdout must be in [0, 1)")
    key = _video_key(video, crop, max_frames, holdout)
    meta_path = out / "meta.json"
    if meta_path.is_file() and (out / "frames.npz").is_file() and json.loads(meta_path.read_text()).get("key") == key:
        return out
    masks, keypoints, index = {}, {}, []
    with _open(video) as stream, PoseEstimator(PoseConfig(segmentation=True)) as estimator:
        for i, frame in enumerate(tqdm(_frames(stream, max_frames), total=_count(stream, max_frames),
                                       desc=f"pose {video.name}", unit="frame", disable=not progress)):
            r = estimator.process(frame.to_ndarray(format="rgb24"), frame.time)
            if r.detected and r.mask is not None and torso_length(r.keypoints, crop.min_visibility) is not None:
                masks[i] = (np.clip(r.mask, 0, 1) * 255 + 0.5).astype(np.uint8)
                keypoints[i] = r.keypoints
                index.append(i)
    if not index:
        raise ValueError(f"{video}: no frame with a visible person")
    torso = float(np.median([torso_length(k, crop.min_visibility) for k in keypoints.values()]))
    rgb_c, mask_c, kp_c = [], [], []
    with _open(video) as stream:  # second pass: frames are not all held in memory
        for i, frame in enumerate(tqdm(_frames(stream, index[-1] + 1), total=index[-1] + 1, desc="crop",
                                       unit="frame", disable=not progress)):
            if i not in masks:
                continue
            c = person_crop(keypoints[i], crop, torso)
            m = masks.pop(i)
            rgb_c.append(c.cut(frame.to_ndarray(format="rgb24") * (m[..., None] >= 128), crop.size))
            mask_c.append(c.cut(m, crop.size))
            kp_c.append(c.keypoints(keypoints[i], crop.size))
            frame_size = [frame.width, frame.height]
    n_test = int(round(len(rgb_c) * holdout))
    meta = {"source": str(video), "key": key, "torso_px": torso, "crop": dataclasses.asdict(crop),
            "frame_size": frame_size,
            "splits": {"train": [0, len(rgb_c) - n_test], "test": [len(rgb_c) - n_test, len(rgb_c)]}}
    return _write(out, rgb_c, mask_c, kp_c, index, meta)


@dataclass
class AvatarBatch:
    bones: torch.Tensor              # (B, 19, s, s) at the model's crop size s
    rgb: torch.Tensor                # (B, 3, S, S) in [0, 1] at the dataset's size S, background black
    mask: torch.Tensor               # (B, S, S) in [0, 1]
    keypoints: torch.Tensor          # (B, 33, 4) pixels of the S-px dataset crop
    part: torch.Tensor | None = None  # (B, S, S) int64 exact part index, NUM_PARTS off the body (mannequin)
    uv: torch.Tensor | None = None    # (B, 2, S, S) exact surface coordinates in [0, 1] (mannequin)


def scale_keypoints(keypoints: torch.Tensor, src: int, dst: int) -> torch.Tensor:
    """Keypoints of an ``src``-px crop in a ``dst``-px crop of the same square (pixel centres at integers)."""
    a = dst / src
    out = keypoints.clone()
    out[..., :2] = (keypoints[..., :2] + 0.5) * a - 0.5
    out[..., 2] = keypoints[..., 2] * a
    return out


class AvatarDataset:
    """A dataset folder in memory; ``split`` = "all" or a split named in meta.json."""

    def __init__(self, folder: str | Path, split: str = "all", bones: BoneStyle = BoneStyle()):
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.folder} is not an avatar dataset (no meta.json); "
                                    "make one with prepare_video or make_mannequin_dataset")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != DATA_FORMAT:
            raise ValueError(f"{meta_path}: format {self.meta.get('format')!r}, expected {DATA_FORMAT!r}")
        with np.load(self.folder / "frames.npz", allow_pickle=False) as d:
            arrays = {k: d[k] for k in ("rgb", "mask", "keypoints", "part", "uv") if k in d}
        if split != "all":
            splits = self.meta.get("splits", {})
            if split not in splits:
                raise ValueError(f"{self.folder}: no split {split!r} (has: {', '.join(splits) or 'none'})")
            a, b = splits[split]
            arrays = {k: v[a:b] for k, v in arrays.items()}
        self.rgb, self.mask, self.keypoints = arrays["rgb"], arrays["mask"], arrays["keypoints"]
        self.part, self.uv = arrays.get("part"), arrays.get("uv")
        self.size = int(self.rgb.shape[1])
        self.bone_style = bones

    def __len__(self) -> int:
        return len(self.rgb)

    @property
    def has_surface(self) -> bool:
        """Whether the frames carry exact part and UV maps (mannequin sets)."""
        return self.part is not None

    def batch(self, indices, device: torch.device | str = "cpu", crop_size: int | None = None) -> AvatarBatch:
        """Frames ``indices``; bones drawn at ``crop_size`` (the model's; default the dataset's size)."""
        idx = np.asarray(indices)
        s = crop_size or self.size
        kp = torch.from_numpy(self.keypoints[idx]).to(device)
        rgb = torch.from_numpy(self.rgb[idx]).to(device).permute(0, 3, 1, 2).float() / 255
        mask = torch.from_numpy(self.mask[idx]).to(device).float() / 255
        part = uv = None
        if self.has_surface:
            p = torch.from_numpy(self.part[idx]).to(device).long()
            part = torch.where(p < 0, NUM_PARTS, p)
            uv = torch.from_numpy(self.uv[idx].astype(np.float32)).to(device).permute(0, 3, 1, 2) / 65535
        bones = rasterize_bones_torch(scale_keypoints(kp, self.size, s), s, s, self.bone_style)
        return AvatarBatch(bones, rgb, mask, kp, part, uv)


def default_split(data: str | Path, name: str) -> str:
    """``name`` where the dataset folder defines that split (prepared videos), else "all"."""
    meta = json.loads((Path(data) / "meta.json").read_text())
    return name if name in meta.get("splits", {}) else "all"
