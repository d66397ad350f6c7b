"""The keypoint message: what crosses the network in telepresence (a few hundred bytes a frame).

    buffers["keypoints"]  (33, 4) float32   x, y pixels of the frame, z relative depth, visibility
                                             (the convention of avatars.body.skeleton)
    buffers["world"]      (33, 3) float32   metres (optional)
    meta: {"detected": bool, "held": bool, "width": W, "height": H}   the frame the pixels refer to
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream.message import Message
from stream.node import NodeError


@dataclass(frozen=True)
class Keypoints:
    keypoints: np.ndarray
    width: int
    height: int
    detected: bool


def keypoint_message(template: Message | None, keypoints: np.ndarray, width: int, height: int, detected: bool,
                     world: np.ndarray | None = None, held: bool = False, **fields) -> Message:
    """A keypoint message for the frame of `template` (same seq and timestamps), or a fresh one from `fields`."""
    buffers = {"keypoints": np.ascontiguousarray(keypoints, np.float32)}
    if world is not None:
        buffers["world"] = np.ascontiguousarray(world, np.float32)
    msg = template.derive(**buffers) if template is not None else Message(buffers=buffers, **fields)
    msg.meta.update(detected=bool(detected), held=bool(held), width=int(width), height=int(height))
    return msg


def read_keypoints(msg: Message, node: str) -> Keypoints:
    """Validated keypoints of a message, or NodeError naming what is missing."""
    kp = msg.buffers.get("keypoints")
    if kp is None or kp.shape != (33, 4):
        raise NodeError(f"{node}: frame {msg.seq}: expected buffer 'keypoints' of shape (33, 4), got "
                        f"{None if kp is None else kp.shape}")
    width, height = msg.meta.get("width"), msg.meta.get("height")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise NodeError(f"{node}: frame {msg.seq}: keypoint message lacks meta width/height")
    return Keypoints(kp, width, height, bool(msg.meta.get("detected", True)))
