"""Live preview in a browser: a small HTTP server with a page showing the output as MJPEG.

MJPEG (multipart/x-mixed-replace JPEGs) because every browser shows it in a plain <img> with no
script, codec negotiation or STUN; at preview sizes its bandwidth is no concern on a LAN.

    GET /             the page (the picture, scaled to the window)
    GET /stream.mjpg  the live stream; each client gets the newest frame, never a backlog
    GET /frame.jpg    the newest frame alone (for scripts and health checks)

Frames are JPEG-encoded in `process` at most `max_fps` times a second, once for all clients.
Binds loopback by default; set host 0.0.0.0 to show it to the LAN.

Glass to glass: when a frame has been written to a viewer (`/stream.mjpg`, `/frame.jpg`), the node
records now minus the frame's capture timestamp: metrics extra `served` (frames written to viewers)
and `glass_to_glass` (p50/p99 ms). That is the latency a viewer gets, up to the socket (the browser's
decode and display are not in it); its own `latency` is only the frame's arrival at this node.
Across hosts it is as good as their clocks' sync.
"""
from __future__ import annotations

import logging
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from stream.message import Message
from stream.metrics import NodeMetrics, Timings
from stream.node import NodeError, Port, Sink
from stream.params import param

log = logging.getLogger(__name__)

_BOUNDARY = "frame"
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>html,body{{margin:0;height:100%;background:#111}}
img{{display:block;width:100%;height:100%;object-fit:contain}}</style></head>
<body><img id="live" src="/stream.mjpg" alt="live output"></body></html>
"""


class LatestJpeg:
    """The newest encoded frame (with its capture timestamp), and a condition that wakes the streaming
    clients when it changes."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.capture_ts = 0.0
        self.version = 0
        self.closed = False

    def publish(self, jpeg: bytes, capture_ts: float) -> None:
        with self.cond:
            self.jpeg, self.capture_ts, self.version = jpeg, capture_ts, self.version + 1
            self.cond.notify_all()

    def wait_newer(self, version: int, timeout: float) -> tuple[bytes | None, float, int]:
        with self.cond:
            self.cond.wait_for(lambda: self.version != version or self.closed, timeout)
            return self.jpeg, self.capture_ts, self.version

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class ServedFrames:
    """Frames written to viewers and their age then (capture to served): the node's glass-to-glass figures."""

    def __init__(self, metrics: NodeMetrics):
        self.metrics, self.ages, self._lock = metrics, Timings(), threading.Lock()
        metrics.extra.update(served=0, glass_to_glass=self.ages.percentiles_ms())

    def __call__(self, capture_ts: float) -> None:
        """(a viewer's thread) One frame captured at `capture_ts` has just been written to a viewer."""
        age = time.time() - capture_ts
        with self._lock:
            self.ages.add(age)
            self.metrics.extra["served"] += 1
            self.metrics.extra["glass_to_glass"] = self.ages.percentiles_ms()


def _handler(latest: LatestJpeg, title: str, served: Callable[[float], None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet: no line per request on stderr
            pass

        def _send(self, body: bytes, content_type: str) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/":
                self._send(PAGE.format(title=title).encode(), "text/html; charset=utf-8")
            elif self.path == "/frame.jpg":
                jpeg, capture_ts, _ = latest.wait_newer(-1, timeout=5.0)
                if jpeg is None:
                    self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
                else:
                    self._send(jpeg, "image/jpeg")
                    served(capture_ts)
            elif self.path == "/stream.mjpg":
                self._stream()
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def _stream(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            version = -1
            try:
                while not latest.closed:
                    jpeg, capture_ts, version = latest.wait_newer(version, timeout=1.0)
                    if jpeg is None:
                        continue
                    self.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                     f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                    self.wfile.flush()
                    served(capture_ts)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the viewer closed the page

    return Handler


def mjpeg_frames(url: str, timeout: float = 10.0) -> Iterator[bytes]:
    """The JPEGs of a `/stream.mjpg` as a viewer receives them (benchmarks and tests read the preview so)."""
    with urllib.request.urlopen(url, timeout=timeout) as stream:
        while True:
            length = None
            while (line := stream.readline()) not in (b"\r\n", b""):  # a part's headers, up to the blank line
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if line == b"":
                return
            if length is not None:
                yield stream.read(length)


class PreviewSink(Sink):
    """A web page with the live output (MJPEG over HTTP); open http://HOST:PORT/ in a browser."""

    inputs = {"in": Port("video")}

    @dataclass
    class Params:
        host: str = param("127.0.0.1", "interface to serve on (0.0.0.0: the whole network)")
        port: int = param(8080, "TCP port")
        max_fps: float = param(25.0, "JPEG frames per second at most")
        max_width: int = param(960, "frames wider than this are scaled down first")
        quality: int = param(80, "JPEG quality 1..100")

        def __post_init__(self) -> None:
            if not 0 <= self.port <= 65535:
                raise ValueError(f"port must be in 0..65535, got {self.port}")
            if not 1 <= self.quality <= 100 or self.max_fps <= 0 or self.max_width < 16:
                raise ValueError("quality must be in 1..100, max_fps > 0 and max_width >= 16")

    def setup(self) -> None:
        import cv2

        self.latest = LatestJpeg()
        try:
            handler = _handler(self.latest, self.ctx.name, ServedFrames(self.ctx.metrics))
            self.server = ThreadingHTTPServer((self.params.host, self.params.port), handler)
        except OSError as exc:
            raise NodeError(f"cannot serve the preview on {self.params.host}:{self.params.port}: {exc}") from None
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="preview-http", daemon=True).start()
        host, port = self.server.server_address[:2]
        log.info("preview at http://%s:%d/", host, port, extra={"node": self.ctx.name})
        self.flags = [cv2.IMWRITE_JPEG_QUALITY, self.params.quality]
        self.last = 0.0

    def process(self, inputs: dict[str, Message]) -> None:
        import cv2

        now = time.monotonic()
        if now - self.last < 1 / self.params.max_fps:
            return
        self.last = now
        msg = inputs["in"]
        image = msg.buffers["image"]
        height, width = image.shape[:2]
        if width > self.params.max_width:
            size = (self.params.max_width, max(1, round(height * self.params.max_width / width)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), self.flags)
        if ok:
            self.latest.publish(data.tobytes(), msg.capture_ts)

    def close(self) -> None:
        if hasattr(self, "server"):
            self.latest.close()
            self.server.shutdown()
            self.server.server_close()
