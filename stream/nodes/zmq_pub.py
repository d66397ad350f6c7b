"""Raw frames on a ZeroMQ PUB socket, for external programs in any language (no msgpack, no shm).

Wire format, one ZeroMQ multipart message per frame:

    part 0  topic, UTF-8 (the `topic` param; SUB sockets filter on it)
    part 1  header, UTF-8 JSON: {"seq": int, "pts": float|null, "capture_ts": float,
            "width": int, "height": int, "channels": 3, "dtype": "uint8", "format": "rgb24"}
    part 2  pixels: height*width*channels bytes, row-major, RGB interleaved

A subscriber (Python): sub.connect(url); sub.subscribe(b"frame");
topic, header, pixels = sub.recv_multipart(); h = json.loads(header);
image = np.frombuffer(pixels, np.uint8).reshape(h["height"], h["width"], h["channels"]).

PUB never blocks: a slow subscriber loses frames beyond `hwm` queued ones (live semantics).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import zmq

from stream.message import Message
from stream.node import NodeError, Port, Sink
from stream.params import param


class ZmqPubSink(Sink):
    """Raw RGB frames with a JSON header on a ZeroMQ PUB socket (see the module docstring for the format)."""

    inputs = {"in": Port("video")}

    @dataclass
    class Params:
        bind: str = param("tcp://127.0.0.1:5556", "endpoint to bind (tcp://HOST:PORT or ipc://PATH)")
        topic: str = param("frame", "first message part; subscribers filter on it")
        hwm: int = param(4, "frames queued per subscriber before newer ones are dropped")

        def __post_init__(self) -> None:
            if self.hwm < 1:
                raise ValueError(f"hwm must be >= 1, got {self.hwm}")

    def setup(self) -> None:
        self.zctx = zmq.Context.instance()
        self.sock = self.zctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, self.params.hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        try:
            self.sock.bind(self.params.bind)
        except zmq.ZMQError as exc:
            raise NodeError(f"cannot bind {self.params.bind}: {exc}") from None
        self.topic = self.params.topic.encode()

    def process(self, inputs: dict[str, Message]) -> None:
        msg = inputs["in"]
        image = np.ascontiguousarray(msg.buffers["image"], dtype=np.uint8)
        height, width = image.shape[:2]
        channels = image.shape[2] if image.ndim == 3 else 1
        header = {"seq": msg.seq, "pts": msg.pts, "capture_ts": msg.capture_ts, "width": width, "height": height,
                  "channels": channels, "dtype": "uint8", "format": "rgb24" if channels == 3 else "gray"}
        self.sock.send_multipart([self.topic, json.dumps(header).encode(), image], copy=False)

    def close(self) -> None:
        if hasattr(self, "sock"):
            self.sock.close()
