"""Measure MediaPipe Pose on the real videos and on mannequin renders: detection rate, time per frame.

Run as ``python -m launch bench pose [MEDIA_DIR]`` (default: `launch.media`). Mannequin rows also
report the median pixel error of the 12 limb joints against the exact ground truth, and
the share of frames where left and right are swapped. The baseline for the ratio is
MediaPipe on the mannequin at 256x256 in the same process.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from avatars.body.mannequin import MOTIONS, Camera, Mannequin, MannequinConfig, MannequinSequence
from avatars.body.pose import PoseEstimator, extract_poses
from avatars.body.skeleton import LM
from launch.media import media_root

BODY = [LM[f"{s}_{j}"] for s in ("left", "right") for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")]
SWAP = [LM[f"{s}_{j}"] for s in ("right", "left") for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")]


def mannequin_rows(frames: int = 60) -> float:
    """Print MediaPipe on each motion (flat and shaded); return the mean ms/frame (the baseline)."""
    times = []
    for shading in (0.0, 0.5):
        mannequin = Mannequin(MannequinConfig(shading=shading))
        for motion in MOTIONS:
            seq = MannequinSequence(motion, num_frames=frames, camera=Camera(), orbit_deg_per_s=0.0,
                                    mannequin=mannequin)
            detected, errors, swaps, spent = 0, [], 0, 0.0
            with PoseEstimator() as est:
                for i, f in enumerate(seq):
                    t = time.perf_counter()
                    r = est.process(f.rgb, i / seq.fps)
                    spent += time.perf_counter() - t
                    if r.detected:
                        detected += 1
                        e = np.linalg.norm(r.keypoints[BODY, :2] - f.joints2d[BODY, :2], axis=1)
                        e_swap = np.linalg.norm(r.keypoints[BODY, :2] - f.joints2d[SWAP, :2], axis=1)
                        errors.append(np.median(e))
                        swaps += np.median(e_swap) < np.median(e)
            times.append(spent / frames)
            print(f"mannequin {motion:>11} shading={shading}: detected {detected / frames:6.1%}, "
                  f"{1e3 * spent / frames:5.1f} ms/frame, median limb-joint error {np.median(errors):5.1f} px "
                  f"(256x256), left/right swapped in {swaps}/{detected} frames")
    return float(np.mean(times))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench pose", description=__doc__.split("\n\n")[0])
    ap.add_argument("media", nargs="?", type=Path, default=media_root(), help="media folder (with video/)")
    media = ap.parse_args(argv).media
    baseline_ms = 1e3 * mannequin_rows()
    videos = sorted(p for p in (media / "video").iterdir() if p.is_file() and p.suffix in (".mp4", ".gif", ".avi"))
    for video in videos:
        stats = extract_poses(video, None, progress=False)
        print(f"{video.name:>36}: {stats.frames:4d} frames, detected {stats.detection_rate:6.1%}, "
              f"{stats.pose_ms_per_frame:5.1f} ms/frame pose ({stats.pose_ms_per_frame / baseline_ms:4.1f}x the "
              f"mannequin 256x256 baseline), {1e3 * stats.wall_s / stats.frames:5.1f} ms/frame with decoding")
    return 0
