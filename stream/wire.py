"""Wire format: one msgpack header frame followed by raw buffer frames.

    [mac]     16 bytes, on edges between processes of one host: keyed BLAKE2b of the header
    frame 0   msgpack map  {v, stream, seq, pts, cap, eos, meta, bufs: [{name, role, dtype, shape[, shm]}][, replay]}
    frame 1.. the bytes of each buffer that travels inline, in `bufs` order (C order)

The mac is keyed with a secret the supervisor gives its node processes (one per run and host),
so a process outside the run cannot forge a header: not a frame, not a shared-memory
descriptor, not an end-of-stream, not a sequence number. Between hosts CurveZMQ
authenticates the sender instead (`stream.transport`). A header with `replay: true` carries
no frame: it tells a restarted consumer that the producer's replay starts here
(`stream.transport.OutputPort`).

A buffer may instead live in a shared-memory slot (`shm: [ring, slot, column, epoch, tag]`, see
`stream.shm`), in which case no frame carries it. Nothing here ever unpickles:
the header is msgpack with bounded sizes, the buffers are raw bytes whose dtype comes
from a whitelist and whose length must equal shape x itemsize. Every check happens
before any buffer is touched; a bad message raises `WireError` and the receiver
counts and drops it.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import msgpack
import numpy as np

from stream.message import ROLES, Message, role_of

VERSION = 2
MAC_BYTES = 16
DTYPES = frozenset({"uint8", "int8", "uint16", "int16", "int32", "int64", "float16", "float32", "float64", "bool"})
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class WireError(ValueError):
    """A message that does not follow the wire format; the receiver counts and drops it."""


class AuthError(WireError):
    """A message whose mac does not prove it comes from this run."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds a receiver enforces before it trusts a header."""

    max_header_bytes: int = 64 * 1024
    max_buffers: int = 16
    max_ndim: int = 4
    max_dim: int = 16384
    max_buffer_bytes: int = 256 * 1024 * 1024
    max_stream_name: int = 128


@dataclass(frozen=True)
class ShmRef:
    """Where a buffer lives when it travels by shared memory instead of inline."""

    ring: str
    slot: int
    column: int
    epoch: int = 0
    tag: int = 0  # the hand-over's tag, as the slot's flag holds it (stream.shm)


def _builtin(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.size <= 64:
        return value.tolist()
    raise TypeError(f"meta value of type {type(value).__name__} cannot go on the wire")


def wire_array(value: Any) -> np.ndarray:
    """The C-contiguous, native-endian numpy array that represents a buffer on the wire."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor crossing a process boundary
        value = value.detach().cpu().numpy()
    arr = np.ascontiguousarray(value)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype.name not in DTYPES:
        raise WireError(f"dtype {arr.dtype} cannot go on the wire (allowed: {sorted(DTYPES)})")
    return arr


def mac(key: bytes, header: Any) -> bytes:
    return hashlib.blake2b(header, key=key, digest_size=MAC_BYTES).digest()


def encode(msg: Message, arrays: dict[str, np.ndarray], shm: dict[str, ShmRef] | None = None,
           key: bytes | None = None, replay: bool = False) -> list[Any]:
    """Frames for `msg`, whose buffers are given already converted by `wire_array`.

    Buffers named in `shm` travel as references; the rest follow the header inline,
    without copies (zmq sends straight from the arrays' memory). With `key`, a mac frame
    leads. `replay` makes the replay marker (see the module docstring).
    """
    shm = shm or {}
    entries, inline = [], []
    for name, arr in arrays.items():
        entry: dict[str, Any] = {"name": name, "role": role_of(name), "dtype": arr.dtype.name, "shape": list(arr.shape)}
        ref = shm.get(name)
        if ref is not None:
            entry["shm"] = [ref.ring, ref.slot, ref.column, ref.epoch, ref.tag]
        else:
            inline.append(arr.data if arr.ndim else arr.reshape(1).data)
        entries.append(entry)
    header = {
        "v": VERSION, "stream": msg.stream, "seq": int(msg.seq),
        "pts": None if msg.pts is None else float(msg.pts), "cap": float(msg.capture_ts),
        "eos": bool(msg.eos), "meta": msg.meta, "bufs": entries,
    }
    if replay:
        header["replay"] = True
    packed = msgpack.packb(header, use_bin_type=True, default=_builtin)
    return [mac(key, packed), packed, *inline] if key is not None else [packed, *inline]


def unpack_bounded(data: Any, limit: int) -> Any:
    """msgpack without pickle-like surprises: no ext types, no container or string longer than `limit`."""
    return msgpack.unpackb(data, raw=False, strict_map_key=True, max_str_len=limit, max_bin_len=limit,
                           max_array_len=limit, max_map_len=limit, max_ext_len=0)


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise WireError(what)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_entry(entry: Any, index: int, limits: Limits) -> tuple[str, np.dtype, tuple[int, ...], int]:
    _need(isinstance(entry, dict), f"buffer {index}: not a map")
    name, role, dtype, shape = entry.get("name"), entry.get("role"), entry.get("dtype"), entry.get("shape")
    _need(isinstance(name, str) and bool(_NAME.match(name)), f"buffer {index}: bad name {name!r}")
    _need(role in ROLES, f"buffer {name}: role {role!r} not one of {ROLES}")
    _need(dtype in DTYPES, f"buffer {name}: dtype {dtype!r} not allowed")
    _need(isinstance(shape, list) and len(shape) <= limits.max_ndim, f"buffer {name}: shape must be a list of at most {limits.max_ndim} dims")
    _need(all(_is_int(d) and 0 <= d <= limits.max_dim for d in shape), f"buffer {name}: shape {shape} has a dimension outside 0..{limits.max_dim}")
    dt = np.dtype(dtype)
    nbytes = math.prod(shape) * dt.itemsize
    _need(nbytes <= limits.max_buffer_bytes, f"buffer {name}: {nbytes} bytes exceeds the limit {limits.max_buffer_bytes}")
    return name, dt, tuple(shape), nbytes


#: Resolves a shared-memory reference to a read-only array, or raises WireError.
ShmResolver = Callable[[ShmRef, np.dtype, tuple[int, ...], int], np.ndarray]


def decode(frames: Sequence[Any], limits: Limits = Limits(), resolve_shm: ShmResolver | None = None,
           key: bytes | None = None) -> Message:
    """Validate `frames` (bytes, memoryviews or zmq Frames) and build a Message over them without copying.

    With `key`, the leading mac must match the header before anything else is read."""
    views = [memoryview(f.buffer if hasattr(f, "buffer") else f) for f in frames]
    if key is not None:
        if len(views) < 2 or views[0].nbytes != MAC_BYTES or views[1].nbytes > limits.max_header_bytes:
            raise AuthError("no message authentication code")
        if not hmac.compare_digest(mac(key, views[1]), views[0]):
            raise AuthError("message authentication failed (not from this run)")
        views = views[1:]
    _need(len(views) >= 1, "empty message")
    _need(views[0].nbytes <= limits.max_header_bytes, f"header of {views[0].nbytes} bytes exceeds {limits.max_header_bytes}")
    try:
        header = unpack_bounded(views[0], limits.max_header_bytes)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise WireError(f"header is not valid msgpack: {exc}") from None
    _need(isinstance(header, dict), "header is not a map")
    _need(header.get("v") == VERSION, f"unsupported wire version {header.get('v')!r}")
    seq, pts, cap, stream = header.get("seq"), header.get("pts"), header.get("cap"), header.get("stream")
    meta, eos, bufs = header.get("meta"), header.get("eos"), header.get("bufs")
    _need(_is_int(seq) and 0 <= seq < 2**63, f"bad seq {seq!r}")
    _need(pts is None or (isinstance(pts, (int, float)) and not isinstance(pts, bool) and math.isfinite(pts)), f"bad pts {pts!r}")
    _need(isinstance(cap, (int, float)) and not isinstance(cap, bool) and math.isfinite(cap), f"bad capture timestamp {cap!r}")
    _need(isinstance(stream, str) and len(stream) <= limits.max_stream_name, "bad stream name")
    _need(isinstance(meta, dict), "meta is not a map")
    _need(isinstance(eos, bool), "eos is not a bool")
    _need(isinstance(bufs, list) and len(bufs) <= limits.max_buffers, f"bufs must be a list of at most {limits.max_buffers}")
    replay = header.get("replay", False)
    _need(replay is False or (replay is True and not bufs and not eos), "bad replay marker")

    buffers: dict[str, np.ndarray] = {}
    inline = iter(views[1:])
    n_inline = sum(1 for e in bufs if not (isinstance(e, dict) and "shm" in e))
    _need(n_inline == len(views) - 1, f"header declares {n_inline} inline buffers but {len(views) - 1} frames follow")
    for i, entry in enumerate(bufs):
        name, dt, shape, nbytes = _check_entry(entry, i, limits)
        _need(name not in buffers, f"buffer {name} appears twice")
        if "shm" in entry:
            ref = entry["shm"]
            _need(resolve_shm is not None, f"buffer {name}: shared memory not available on this edge")
            _need(isinstance(ref, list) and len(ref) == 5 and isinstance(ref[0], str) and all(_is_int(v) for v in ref[1:]),
                  f"buffer {name}: bad shm reference {ref!r}")
            buffers[name] = resolve_shm(ShmRef(*ref), dt, shape, nbytes)
        else:
            view = next(inline)
            _need(view.nbytes == nbytes, f"buffer {name}: {view.nbytes} bytes but shape {list(shape)} x {dt.itemsize} needs {nbytes}")
            buffers[name] = np.frombuffer(view, dtype=dt).reshape(shape)
    return Message(seq=seq, pts=None if pts is None else float(pts), capture_ts=float(cap), stream=stream,
                   buffers=buffers, meta=meta, eos=eos, replay=replay)
