"""The pose command of the command line (extract-pose): a thin wrapper over `avatars.body.pose`."""
from __future__ import annotations

import argparse

from launch.command import Exit, refuse_overwrite, refusing


def cmd_extract_pose(args: argparse.Namespace) -> int:
    from avatars.body.pose import OneEuroConfig, PoseConfig, extract_poses

    refuse_overwrite([args.video], args.output)
    smoothing = None if args.no_smoothing else OneEuroConfig(min_cutoff=args.min_cutoff, beta=args.beta)
    with refusing(FileNotFoundError, ValueError):  # a missing video, or one PyAV cannot read
        stats = extract_poses(args.video, args.output, smoothing=smoothing,
                              config=PoseConfig(model_complexity=args.model_complexity, segmentation=False))
    print(f"{args.output}: {stats.frames} frames, detection rate {stats.detection_rate:.1%}, "
          f"{stats.pose_ms_per_frame:.1f} ms/frame pose")
    return Exit.OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract-pose", help="MediaPipe poses of every frame of a video, to an .npz file")
    p.add_argument("video")
    p.add_argument("-o", "--output", required=True, help="POSES.npz")
    p.add_argument("--model-complexity", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--no-smoothing", action="store_true", help="raw landmarks, no One-Euro filter")
    p.add_argument("--min-cutoff", type=float, default=1.0, help="One-Euro minimum cutoff (Hz)")
    p.add_argument("--beta", type=float, default=10.0, help="One-Euro speed coefficient")
    p.set_defaults(func=cmd_extract_pose)
