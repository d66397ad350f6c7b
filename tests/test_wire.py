"""Wire format and shared-memory rings: round trips, and every kind of bad message rejected before use."""
from __future__ import annotations

import gc

import msgpack
import numpy as np
import pytest

from stream.message import Message
from stream.shm import ShmReader, ShmRing, StaleError, lease_of
from stream.wire import Limits, ShmRef, WireError, decode, encode, wire_array


def _frames(msg: Message, shm=None):
    arrays = {n: wire_array(v) for n, v in msg.buffers.items()}
    return [bytes(f) for f in encode(msg, arrays, shm)]


def _header(frames):
    return msgpack.unpackb(frames[0], raw=False)


def _with_header(frames, header):
    return [msgpack.packb(header), *frames[1:]]


def test_round_trip_keeps_header_and_buffers():
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    kp = np.random.default_rng(0).random((33, 4), dtype=np.float32)
    msg = Message(seq=7, pts=0.25, capture_ts=123.5, stream="cam", buffers={"image": image, "keypoints": kp},
                  meta={"frame": 7, "detected": True, "size": [5, 4]})
    out = decode(_frames(msg))
    assert (out.seq, out.pts, out.capture_ts, out.stream, out.meta) == (7, 0.25, 123.5, "cam", msg.meta)
    np.testing.assert_array_equal(out.buffers["image"], image)
    np.testing.assert_array_equal(out.buffers["keypoints"], kp)
    assert not out.buffers["image"].flags.writeable  # receivers get read-only views, no copy


def test_end_of_stream_round_trip():
    assert decode(_frames(Message.end_of_stream(3))).eos


def test_non_contiguous_and_big_endian_arrays_are_normalised():
    a = np.arange(24, dtype=">i4").reshape(4, 6)[:, ::2]
    out = decode(_frames(Message(buffers={"tensor": a})))
    np.testing.assert_array_equal(out.buffers["tensor"], a)


def test_object_dtype_cannot_be_sent():
    with pytest.raises(WireError, match="dtype"):
        wire_array(np.array([object()]))


GOOD = Message(seq=1, buffers={"image": np.zeros((8, 8, 3), np.uint8)})


@pytest.mark.parametrize("mutate, reason", [
    (lambda f: [b"\xc1garbage"] + f[1:], "msgpack"),
    (lambda f: [msgpack.packb([1, 2, 3])] + f[1:], "not a map"),
    (lambda f: [b"\x00" * 70000] + f[1:], "exceeds"),
    (lambda f: f[:1], "declares 1 inline"),
    (lambda f: [f[0], f[1][:-1]], "bytes but shape"),
    (lambda f: _with_header(f, {**_header(f), "v": 99}), "version"),
    (lambda f: _with_header(f, {**_header(f), "seq": -1}), "seq"),
    (lambda f: _with_header(f, {**_header(f), "seq": "1"}), "seq"),
    (lambda f: _with_header(f, {**_header(f), "cap": float("nan")}), "capture"),
    (lambda f: _with_header(f, {**_header(f), "meta": [1]}), "meta"),
    (lambda f: _with_header(f, {**_header(f), "bufs": [{**_header(f)["bufs"][0], "dtype": "object"}]}), "dtype"),
    (lambda f: _with_header(f, {**_header(f), "bufs": [{**_header(f)["bufs"][0], "role": "pickle"}]}), "role"),
    (lambda f: _with_header(f, {**_header(f), "bufs": [{**_header(f)["bufs"][0], "name": "../x"}]}), "name"),
    (lambda f: _with_header(f, {**_header(f), "bufs": [{**_header(f)["bufs"][0], "shape": [100000, 100000, 3]}]}), "dimension"),
    (lambda f: _with_header(f, {**_header(f), "bufs": [{**_header(f)["bufs"][0], "shape": [16384, 16384, 3]}]}), "exceeds"),
    (lambda f: _with_header(f, {**_header(f), "bufs": [{**_header(f)["bufs"][0], "shape": [1, 1, 1, 1, 1]}]}), "dims"),
    (lambda f: _with_header(f, {**_header(f), "bufs": [{**_header(f)["bufs"][0], "shape": [8, 8, -3]}]}), "dimension"),
    (lambda f: _with_header(f, {**_header(f), "bufs": [_header(f)["bufs"][0]] * 2}) + [f[1]], "twice"),
    (lambda f: _with_header(f, {**_header(f), "bufs": [{**_header(f)["bufs"][0], "shm": ["r", 0, 0, 0]}]})[:1], "shared memory"),
])
def test_malformed_messages_are_rejected(mutate, reason):
    with pytest.raises(WireError, match=reason):
        decode(mutate(_frames(GOOD)), Limits())


def test_ext_types_in_header_are_refused():
    frames = _frames(GOOD)
    header = _header(frames)
    header["meta"] = {"x": msgpack.ExtType(1, b"boom")}
    with pytest.raises(WireError):
        decode([msgpack.packb(header), frames[1]])


def test_shm_slot_travels_without_copy_and_is_released_by_refcount(tmp_path):
    ring = ShmRing(tmp_path / "src.out", slot_bytes=1 << 16, nslots=2, columns=1)
    reader = ShmReader(tmp_path, {"src.out": 0})
    lease = ring.try_acquire()
    arr = np.asarray(lease)[: 64 * 64 * 3].view(np.uint8).reshape(64, 64, 3)
    arr[:] = 7
    assert lease_of(arr) is lease
    ref = ring.publish(lease, 0)
    frames = _frames(Message(buffers={"image": arr}), {"image": ref})
    assert len(frames) == 1  # the pixels did not travel on the socket
    del lease, arr
    gc.collect()
    got = decode(frames, resolve_shm=reader.resolve).buffers["image"]
    assert got.shape == (64, 64, 3) and (got == 7).all() and not got.flags.writeable
    other = ring.try_acquire()  # slot 1, held by the producer from here on
    assert other is not None and ring.try_acquire() is None  # slot 0 still held by the consumer's view
    view = got[10:20]  # a derived view keeps the slot too
    del got
    gc.collect()
    assert ring.try_acquire() is None
    del view
    gc.collect()
    assert ring.try_acquire().slot == 0


def test_shm_reference_to_a_foreign_ring_or_slot_is_rejected(tmp_path):
    ShmRing(tmp_path / "src.out", slot_bytes=4096, nslots=2, columns=1)
    reader = ShmReader(tmp_path, {"src.out": 0})
    for ref in (ShmRef("other.out", 0, 0), ShmRef("src.out", 5, 0), ShmRef("src.out", 0, 1)):
        with pytest.raises(WireError):
            reader.resolve(ref, np.dtype(np.uint8), (10,), 10)
    with pytest.raises(WireError, match="outside"):
        reader.resolve(ShmRef("src.out", 0, 0), np.dtype(np.uint8), (8192,), 8192)


def test_restarted_consumer_clears_its_holds_and_refuses_what_was_sent_to_its_predecessor(tmp_path):
    ring = ShmRing(tmp_path / "src.out", slot_bytes=4096, nslots=1, columns=2)
    lease = ring.try_acquire()
    ref0 = ring.publish(lease, 0)
    ring.publish(lease, 1)
    del lease
    gc.collect()
    restarted = ShmReader(tmp_path, {"src.out": 0})
    restarted.reset()
    assert ring.try_acquire() is None  # column 1 still holds it
    with pytest.raises(StaleError):
        restarted.resolve(ref0, np.dtype(np.uint8), (10,), 10)
    ShmReader(tmp_path, {"src.out": 1}).reset()
    lease = ring.try_acquire()
    assert lease is not None
    fresh = ring.publish(lease, 0)
    assert fresh.epoch == ref0.epoch + 1
    assert restarted.resolve(fresh, np.dtype(np.uint8), (10,), 10).shape == (10,)


def test_a_stale_descriptor_does_not_free_its_slot_once_handed_again_under_the_new_epoch(tmp_path):
    # Restart race: the slot of a descriptor queued for the dead consumer is reused, under the new
    # epoch, before that stale descriptor arrives; refusing it must not free the new hand-over.
    ring = ShmRing(tmp_path / "src.out", slot_bytes=4096, nslots=1, columns=1)
    lease = ring.try_acquire()
    stale = ring.publish(lease, 0)
    del lease
    gc.collect()
    restarted = ShmReader(tmp_path, {"src.out": 0})
    restarted.reset()
    lease = ring.try_acquire()
    assert lease is not None and lease.slot == stale.slot
    fresh = ring.publish(lease, 0)
    del lease
    gc.collect()
    with pytest.raises(StaleError):
        restarted.resolve(stale, np.dtype(np.uint8), (10,), 10)
    assert ring.try_acquire() is None  # still held for `fresh`: the producer must not rewrite it
    view = restarted.resolve(fresh, np.dtype(np.uint8), (10,), 10)
    del view
    gc.collect()
    assert ring.try_acquire() is not None  # released once the consumer let go


def test_a_header_without_the_runs_mac_is_refused():
    key = bytes(range(32))
    arrays = {"image": wire_array(np.zeros((8, 8, 3), np.uint8))}
    frames = [bytes(f) for f in encode(GOOD, arrays, None, key)]
    assert decode(frames, key=key).seq == 1
    with pytest.raises(WireError, match="no message authentication code"):
        decode(frames[1:], key=key)  # a well-formed message from outside the run
    forged = _with_header(frames[1:], {**_header(frames[1:]), "seq": 2 ** 62})
    with pytest.raises(WireError, match="authentication failed"):
        decode([frames[0], *forged], key=key)  # a genuine mac on a changed header
    with pytest.raises(WireError, match="authentication failed"):
        decode(frames, key=bytes(32))  # another run's key


def test_a_descriptor_for_a_slot_not_handed_to_this_input_is_refused_and_frees_nothing(tmp_path):
    # forged: the right ring, column and epoch, but a slot the producer gave this input no flag for; and
    # a forged copy of a genuine descriptor must not clear that slot's flag when it goes away
    ring = ShmRing(tmp_path / "src.out", slot_bytes=4096, nslots=3, columns=1)
    reader = ShmReader(tmp_path, {"src.out": 0})
    lease = ring.try_acquire()
    genuine = ring.publish(lease, 0)
    del lease
    gc.collect()
    for slot in (1, 2):
        with pytest.raises(WireError, match="not handed to this input"):
            reader.resolve(ShmRef("src.out", slot, 0, genuine.epoch), np.dtype(np.uint8), (10,), 10)
    with pytest.raises(StaleError):
        reader.resolve(ShmRef("src.out", genuine.slot, 0, genuine.epoch + 7), np.dtype(np.uint8), (10,), 10)
    assert ring.map.flags[genuine.slot, 0] != 0  # neither refusal freed the genuine hand-over
    assert reader.resolve(genuine, np.dtype(np.uint8), (10,), 10).shape == (10,)


def test_a_stale_descriptor_never_clears_a_newer_hand_over_of_its_slot(tmp_path):
    # the flag was epoch % 255 + 1, so epoch 0 and 255 were the same flag; and two hand-overs of one slot
    # in one epoch (a replay's, while a view of the first is still alive) could not be told apart
    ring = ShmRing(tmp_path / "src.out", slot_bytes=4096, nslots=1, columns=1)
    reader = ShmReader(tmp_path, {"src.out": 0})
    ring.map.epochs[0] = 255
    lease = ring.try_acquire()
    first = ring.publish(lease, 0)
    view = reader.resolve(first, np.dtype(np.uint8), (10,), 10)
    again = ring.publish(lease, 0)  # handed again (a replay) while the first view lives
    assert again.epoch == first.epoch == 255 and again.tag != first.tag
    del view
    gc.collect()
    assert ring.map.flags[0, 0] == again.tag  # letting go of the first did not free the second
    with pytest.raises(StaleError):
        reader.resolve(ShmRef("src.out", 0, 0, 0, first.tag), np.dtype(np.uint8), (10,), 10)
    assert reader.resolve(again, np.dtype(np.uint8), (10,), 10).shape == (10,)


def test_a_restarted_producer_starts_a_fresh_ring_and_its_predecessors_stragglers_are_stale(tmp_path):
    # a descriptor published but never sent by a producer that died held its slot for good: the restarted
    # producer got no free slot and fell back to one frame a second (seen at 3,000 frames)
    ring = ShmRing(tmp_path / "src.out", slot_bytes=4096, nslots=3, columns=1)
    reader = ShmReader(tmp_path, {"src.out": 0})
    held = reader.resolve(ring.publish(ring.try_acquire(), 0), np.dtype(np.uint8), (10,), 10)
    early = ring.publish(ring.try_acquire(), 0)  # both still queued when the producer died
    late = ring.publish(ring.try_acquire(), 0)
    restarted = ShmRing(tmp_path / "src.out", slot_bytes=4096, nslots=3, columns=1)
    fresh = [restarted.try_acquire() for _ in range(3)]
    assert all(lease is not None for lease in fresh)  # nothing leaked over
    assert reader.resolve(early, np.dtype(np.uint8), (10,), 10).shape == (10,)  # still read from the old file
    assert reader.resolve(restarted.publish(fresh[0], 0), np.dtype(np.uint8), (10,), 10).shape == (10,)
    with pytest.raises(StaleError, match="replaced"):  # once the new file is in use, the old one's are stale
        reader.resolve(late, np.dtype(np.uint8), (10,), 10)
    assert held.shape == (10,)  # a view of the old file stays valid until it goes
