"""The keypoint message: what crosses the network in telepresence (under 300 bytes a frame).

    buffers["keypoints"]  (17, 9) uint8     the 33 landmarks, quantised, two to a 9-byte row (below)
    buffers["world"]      (33, 3) float32   metres (optional)
    meta: {"detected": bool, "width": W, "height": H}   a pose to draw (found, or held by pose's gap
                                                         policy), and the frame the landmarks refer to

Every landmark of the bone stack is used (face, hands and feet included: avatars.body.skeleton),
so all 33 travel, each in 36 bits, most significant bit first: x and y as 12-bit fractions of
the frame's width and height over [-1, 2] (a joint a whole frame outside it is clipped; steps of
0.47 px at 640 wide), z (relative depth, pixels) as an 8-bit fraction of max(W, H) over
[-0.5, 0.5] (the span in which the bone stack's depth values are not clipped anyway:
avatars.body.bones), visibility in 4 bits (k / 15: a threshold of 0.5 gives the same answer as
on the unquantised value). A joint with a non-finite coordinate travels as invisible. With the
wire header (seq, timestamps, meta) that is 298 bytes, against 677 for float32 (33, 4); what it
changes in the avatar's render is measured in docs/pose.md. A receiving `keypoints` port drops
(and counts in `rejected`) a message of another shape, dtype or frame size: `keypoint_problem`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream.message import Message
from stream.node import NodeError

NUM_LANDMARKS = 33
#: Per column (x / W, y / H, z / max(W, H), visibility): the range quantised and its bits.
_LO = np.array([-1.0, -1.0, -0.5, 0.0])
_HI = np.array([2.0, 2.0, 0.5, 1.0])
_BITS = (12, 12, 8, 4)
_LEVELS = np.array([2 ** b - 1 for b in _BITS], np.float64)
_ROW_BITS = sum(_BITS)            # 36 bits a landmark, two landmarks to a 9-byte row
PACKED_SHAPE = ((NUM_LANDMARKS + 1) // 2, 2 * _ROW_BITS // 8)
_SHIFTS = [np.arange(b - 1, -1, -1) for b in _BITS]


@dataclass(frozen=True)
class Keypoints:
    keypoints: np.ndarray  # (33, 4) float32, pixels of a width x height frame (avatars.body.skeleton)
    width: int
    height: int
    detected: bool


def pack_keypoints(keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """(33, 4) pixel keypoints of a width x height frame -> the (17, 9) uint8 wire form (module docstring)."""
    kp = np.asarray(keypoints, np.float64).reshape(NUM_LANDMARKS, 4)
    norm = kp / np.array([width, height, max(width, height), 1.0])
    finite = np.isfinite(norm).all(axis=1)
    norm = np.where(finite[:, None], norm, _LO)
    q = np.rint((np.clip(norm, _LO, _HI) - _LO) / (_HI - _LO) * _LEVELS).astype(np.int64)
    q[~finite, 3] = 0
    bits = np.concatenate([(q[:, k, None] >> _SHIFTS[k]) & 1 for k in range(len(_BITS))], axis=1)
    bits = np.concatenate([bits, np.zeros((1, _ROW_BITS), np.int64)])[:2 * PACKED_SHAPE[0]]  # a pad landmark
    return np.packbits(bits.astype(np.uint8).reshape(PACKED_SHAPE[0], 2 * _ROW_BITS), axis=1)


def unpack_keypoints(packed: np.ndarray, width: int, height: int) -> np.ndarray:
    """The (17, 9) uint8 wire form -> (33, 4) float32 pixel keypoints of a width x height frame."""
    bits = np.unpackbits(np.asarray(packed, np.uint8), axis=1).reshape(-1, _ROW_BITS)[:NUM_LANDMARKS].astype(np.int64)
    q, start = np.empty((NUM_LANDMARKS, 4), np.float64), 0
    for k, b in enumerate(_BITS):
        q[:, k] = bits[:, start:start + b] @ (1 << _SHIFTS[k])
        start += b
    norm = _LO + q / _LEVELS * (_HI - _LO)
    return (norm * np.array([width, height, max(width, height), 1.0])).astype(np.float32)


def keypoint_message(template: Message | None, keypoints: np.ndarray, width: int, height: int, detected: bool,
                     world: np.ndarray | None = None, **fields) -> Message:
    """A keypoint message for the frame of `template` (same seq and timestamps), or a fresh one from `fields`."""
    buffers = {"keypoints": pack_keypoints(keypoints, width, height)}
    if world is not None:
        buffers["world"] = np.ascontiguousarray(world, np.float32)
    msg = template.derive(**buffers) if template is not None else Message(buffers=buffers, **fields)
    # only what a receiver needs: the video frame's own meta (colour, rotation...) stays behind
    msg.meta = {"detected": bool(detected), "width": int(width), "height": int(height)}
    return msg


def keypoint_problem(msg: Message) -> str | None:
    """Why `msg` is not a keypoint message (None: it is). The receiving port checks it before delivery, so
    a malformed or forged one from the network is counted and dropped (stream.transport), not fatal."""
    packed = msg.buffers.get("keypoints")
    if packed is None or tuple(packed.shape) != PACKED_SHAPE or packed.dtype != np.uint8:
        return (f"expected buffer 'keypoints' of shape {PACKED_SHAPE} uint8 (the quantised keypoint message, "
                f"stream.keypoints), got {None if packed is None else f'{tuple(packed.shape)} {packed.dtype}'}")
    width, height = msg.meta.get("width"), msg.meta.get("height")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 16384 for v in (width, height)):
        return f"keypoint message needs meta width/height in 1..16384, got {width!r}x{height!r}"
    return None


def read_keypoints(msg: Message, node: str) -> Keypoints:
    """Validated keypoints of a message, or NodeError naming what is wrong."""
    if (problem := keypoint_problem(msg)) is not None:
        raise NodeError(f"{node}: frame {msg.seq}: {problem}")
    width, height = msg.meta["width"], msg.meta["height"]
    return Keypoints(unpack_keypoints(msg.buffers["keypoints"], width, height), width, height,
                     bool(msg.meta.get("detected", True)))


def fit_keypoints(kp: Keypoints, width: int, height: int) -> np.ndarray:
    """`kp` mapped onto a width x height frame that shows all of its own frame, letterboxed and centred:
    one scale for x, y and depth, so the person keeps their shape at any output size (a stretch
    would make a landscape person thin in a portrait frame). Pixel centres at integers, as everywhere."""
    scale = min(width / kp.width, height / kp.height)
    off_x, off_y = (width - scale * kp.width) / 2, (height - scale * kp.height) / 2
    out = kp.keypoints.copy()
    out[:, 0] = (kp.keypoints[:, 0] + 0.5) * scale + off_x - 0.5
    out[:, 1] = (kp.keypoints[:, 1] + 0.5) * scale + off_y - 0.5
    out[:, 2] = kp.keypoints[:, 2] * scale
    return out
