"""Shared-memory frame rings: frames cross processes on one host with at most one copy.

Each output port that feeds other processes on this host owns a ring: a file in
/dev/shm mapped by the producer and by every consumer, with `nslots` equal slots and
one flag byte per (slot, consumer column). Only ZeroMQ carries the small descriptor
(`ShmRef`) of a slot; the pixels never pass through a socket.

Ownership is by reference counting, so a node never has to release anything by hand:
- the producer gets a slot as a writable array (a *lease*); while any view of it is
  alive the slot stays reserved;
- sending sets the flag of each consumer the descriptor went to;
- the consumer turns a descriptor into a read-only view whose last reference, when
  garbage-collected, clears its flag (`weakref.finalize`).
A slot is free when the producer holds no lease on it and no consumer flag is set.

A restarted consumer cannot release what its dead predecessor held, so it clears its
column and bumps the column's *epoch*; descriptors published under an older epoch
(still queued for the dead process) are then refused as stale, instead of being read
from a slot the producer may already be rewriting. A flag holds the *tag* of the hand-over
that set it (a 32-bit number the producer never gives twice in a row of 2**32), and the
descriptor carries that tag: a descriptor is honoured only while its slot's flag holds its tag,
so a forged one (any slot, any epoch) is refused, and no descriptor, stale or forged, ever
clears a flag that is not its own: not even an earlier hand-over of the same slot in the same
epoch (a replay hands a slot again while a view of it may still be alive). A consumer's
first start never clears anything: descriptors may already be on their way to it.

A restarted producer makes a new ring file in place of the old one (rename): the descriptors
its dead predecessor published but never sent would otherwise hold their slots for good.
Consumers keep their mapping of the old file until their views go, and read the dead
producer's stragglers from it (nobody writes it any more); the first descriptor that does not
fit the file they have makes them look again and map the new one (its inode changed), after
which the old file's stragglers are refused as stale (the restarted producer sends those
frames again). An aligned 32-bit word written
by one side and read by the other needs no atomics on the platforms we support; the ZeroMQ
message that follows the write orders it.
"""
from __future__ import annotations

import ctypes
import itertools
import mmap
import os
import secrets
import struct
import tempfile
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from stream.wire import ShmRef, WireError


class StaleError(WireError):
    """A descriptor meant for a consumer's previous incarnation: dropped, not malformed."""


_MAGIC = b"NSRING2\0"
_HEADER = struct.Struct("<8sIIQ")  # magic, nslots, columns, slot_bytes
_PAGE = mmap.PAGESIZE


def shm_root() -> Path:
    """Where rings live: tmpfs when the OS has one, else the temp folder (still page-cache backed)."""
    return Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())


def _align(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def _data_offset(nslots: int, columns: int) -> int:
    """Header, then a uint32 flag per (slot, column), a uint32 epoch per column, then the page-aligned slots."""
    return _align(_HEADER.size + 4 * nslots * columns + 4 * columns, _PAGE)


class _Lease:
    """Exposes one slot's memory to numpy; the slot is in use while this object lives."""

    def __init__(self, ring: "_Mapping", slot: int, address: int, nbytes: int, readonly: bool):
        self.ring, self.slot = ring, slot
        self.__array_interface__ = {"data": (address, readonly), "shape": (nbytes,), "typestr": "|u1", "version": 3}


def lease_of(arr: np.ndarray) -> _Lease | None:
    """The lease behind `arr` when `arr` views a slot from its first byte, contiguously; else None."""
    base = arr
    while isinstance(base, np.ndarray):
        base = base.base
    if not isinstance(base, _Lease) or not arr.flags.c_contiguous:
        return None
    return base if arr.__array_interface__["data"][0] == base.__array_interface__["data"][0] else None


class _Mapping:
    """A mapped ring file: geometry, flags and slot addresses."""

    def __init__(self, path: Path, create: tuple[int, int, int] | None = None):
        self.path = path
        if create is not None:
            nslots, columns, slot_bytes = create
            self.data_offset = _data_offset(nslots, columns)
            size = self.data_offset + nslots * slot_bytes
            tmp = path.with_suffix(".new")
            fd = os.open(tmp, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(fd, size)
                os.pwrite(fd, _HEADER.pack(_MAGIC, nslots, columns, slot_bytes), 0)
            finally:
                os.close(fd)
            os.replace(tmp, path)  # consumers never see a half-initialised ring
        fd = os.open(path, os.O_RDWR)
        try:
            size, self.inode = os.fstat(fd).st_size, os.fstat(fd).st_ino
            if size < _HEADER.size:
                raise WireError(f"shared-memory ring {path.name} is truncated")
            self.mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        magic, self.nslots, self.columns, self.slot_bytes = _HEADER.unpack_from(self.mm, 0)
        self.data_offset = _data_offset(self.nslots, self.columns)
        if magic != _MAGIC or size < self.data_offset + self.nslots * self.slot_bytes:
            raise WireError(f"shared-memory ring {path.name} has a bad header")
        self.flags = np.frombuffer(self.mm, np.uint32, self.nslots * self.columns, _HEADER.size).reshape(self.nslots, self.columns)
        self.epochs = np.frombuffer(self.mm, np.uint32, self.columns, _HEADER.size + 4 * self.nslots * self.columns)
        self._anchor = ctypes.c_char.from_buffer(self.mm)  # pins the mapping; gives its address
        self.base_address = ctypes.addressof(self._anchor)

    def slot_address(self, slot: int) -> int:
        return self.base_address + self.data_offset + slot * self.slot_bytes


class ShmRing:
    """Producer side of a ring: hands out writable slots and publishes them to consumer columns."""

    def __init__(self, path: Path, slot_bytes: int, nslots: int, columns: int):
        self.map = _Mapping(path, create=(nslots, columns, _align(slot_bytes, _PAGE)))
        self.name = path.name
        self._held: set[int] = set()
        # re-entrant: a lease the garbage collector frees while try_acquire holds the lock releases its slot
        # through the same lock, in the same thread (a plain Lock deadlocked the producer there)
        self._lock = threading.RLock()
        self._next = 0
        self._tags = itertools.count(secrets.randbelow(2 ** 31))  # from a random start: a restarted producer's too

    @property
    def slot_bytes(self) -> int:
        return self.map.slot_bytes

    def _release(self, slot: int) -> None:
        with self._lock:
            self._held.discard(slot)

    def try_acquire(self) -> _Lease | None:
        """A free slot as a writable lease, or None when every slot is in use."""
        flags = self.map.flags
        with self._lock:
            for k in range(self.map.nslots):
                slot = (self._next + k) % self.map.nslots
                if slot not in self._held and not flags[slot].any():
                    self._held.add(slot)
                    self._next = slot + 1
                    break
            else:
                return None
        lease = _Lease(self, slot, self.map.slot_address(slot), self.map.slot_bytes, readonly=False)
        weakref.finalize(lease, self._release, slot)
        return lease

    def acquire(self, timeout: float) -> _Lease | None:
        """Wait up to `timeout` seconds for a free slot."""
        deadline, pause = time.monotonic() + timeout, 20e-6
        while (lease := self.try_acquire()) is None:
            if time.monotonic() >= deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 2e-3)
        return lease

    def publish(self, lease: _Lease, column: int) -> ShmRef:
        """Mark the slot as handed to consumer `column`; it stays busy until that consumer lets go."""
        epoch = int(self.map.epochs[column])  # read before the flag is set: a reset in between makes it stale
        tag = next(self._tags) % (2 ** 32 - 1) + 1
        self.map.flags[lease.slot, column] = tag
        return ShmRef(self.name, lease.slot, column, epoch, tag)

    def retract(self, ref: ShmRef) -> None:
        """Undo `publish` for a descriptor that could not be sent."""
        self.map.flags[ref.slot, ref.column] = 0


class ShmReader:
    """Consumer side: turns descriptors into read-only views over the rings it is allowed to read."""

    def __init__(self, root: Path, rings: dict[str, int]):
        self.root = root
        self.rings = rings  # ring name -> the column this consumer owns in it
        self._maps: dict[str, _Mapping] = {}
        self._replaced: dict[str, _Mapping] = {}  # the file a restarted producer replaced, for its stragglers

    def reset(self) -> None:
        """After a restart: drop what the dead predecessor held, and refuse what was sent to it."""
        for name, column in self.rings.items():
            if (self.root / name).exists():
                m = self._map(name)
                m.epochs[column] += 1
                m.flags[:, column] = 0

    def _map(self, name: str, recheck: bool = False) -> _Mapping:
        """The mapping of ring `name`; with `recheck`, of the file there now (its producer may have restarted)."""
        m = self._maps.get(name)
        if m is None or recheck and os.stat(self.root / name).st_ino != m.inode:
            if m is not None:
                self._replaced[name] = m
            m = self._maps[name] = _Mapping(self.root / name)
        return m

    @staticmethod
    def _release(mapping: _Mapping, slot: int, column: int, tag: int) -> None:
        if mapping.flags[slot, column] == tag:  # the producer writes a flag only while it is 0
            mapping.flags[slot, column] = 0

    def _problem(self, m: _Mapping, ref: ShmRef, nbytes: int) -> WireError | None:
        """Why `ref` cannot be read from mapping `m` (None: it can)."""
        if not 0 <= ref.slot < m.nslots or ref.column >= m.columns or nbytes > m.slot_bytes:
            return WireError(f"shm reference {ref} outside ring {ref.ring!r} ({m.nslots} slots of {m.slot_bytes} bytes)")
        if ref.epoch != m.epochs[ref.column]:
            self._release(m, ref.slot, ref.column, ref.tag)  # only while still its own, not a newer hand-over's
            return StaleError(f"shm reference {ref} was sent to this input's previous incarnation")
        if ref.tag == 0 or m.flags[ref.slot, ref.column] != ref.tag:
            old = self._replaced.get(ref.ring)
            if old is not None and ref.slot < old.nslots and ref.tag and old.flags[ref.slot, ref.column] == ref.tag:
                return StaleError(f"shm reference {ref} is from the ring its restarted producer replaced")
            return WireError(f"shm reference {ref}: the slot was not handed to this input (forged, or already released)")
        return None

    def resolve(self, ref: ShmRef, dtype: np.dtype, shape: tuple[int, ...], nbytes: int) -> np.ndarray:
        if self.rings.get(ref.ring) != ref.column:
            raise WireError(f"shm reference to ring {ref.ring!r} column {ref.column} is not for this input")
        try:
            m = self._map(ref.ring)
            problem = self._problem(m, ref, nbytes)
            if problem is not None and (newer := self._map(ref.ring, recheck=True)) is not m:  # a new file: look there
                m, problem = newer, self._problem(newer, ref, nbytes)
        except OSError as exc:
            raise WireError(f"cannot map shared-memory ring {ref.ring!r}: {exc}") from None
        if problem is not None:
            raise problem
        lease = _Lease(m, ref.slot, m.slot_address(ref.slot), nbytes, readonly=True)
        weakref.finalize(lease, self._release, m, ref.slot, ref.column, ref.tag)
        return np.asarray(lease).view(dtype).reshape(shape)
