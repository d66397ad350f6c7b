"""The source of every live graph: `device` names a camera, a video file or stream, a folder of images,
or the test pattern, and the node reads it through the source that already reads that kind of input.

The backend is chosen in setup from what `device` names (`backend_of`):

    0, 1, /dev/video2          a camera, through OpenCV (V4L2 on Linux): it negotiates webcam formats
                               (MJPEG/YUYV) portably; pts = wall-clock seconds since the first frame
    clip.mp4                   a video file (`stream.nodes.video`), paced at its own timestamps like a
                               camera; `loop` plays it again with increasing pts
    http(s)://...              the same for a file served over HTTP
    rtsp:// srt:// udp:// ...  a live network stream (`stream.nodes.video`), not paced: its sender paces it,
                               and holding back a burst after a network hiccup would only add latency
    frames/                    a folder of images (`stream.nodes.images`) at `fps`, paced
    test                       the moving test pattern (`stream.nodes.testing.synthetic`) at width x height, fps

so `--set camera.device=clip.mp4` turns a live graph onto a recorded clip with the same output port.
Whatever cannot be opened is a NodeError naming it. OpenCV's own WARN/ERROR lines are silenced: the
node says what went wrong.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np

from stream.message import Message
from stream.node import NodeError, Port, Source
from stream.nodes.images import ImageFolderSource
from stream.nodes.testing.synthetic import SyntheticSource
from stream.nodes.video import VideoSource
from stream.params import param

Backend = Literal["camera", "file", "stream", "folder", "test"]
#: URL schemes of live network streams (not paced) and of files served over the network (paced).
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "srt", "udp", "tcp")
FILE_SCHEMES = ("http", "https")
TEST_PATTERN = "test"


def backend_of(device: str) -> Backend:
    """What `device` names; a NodeError when it names nothing that can be opened."""
    scheme, sep, _ = device.partition("://")
    if sep:
        if scheme.lower() in LIVE_SCHEMES:
            return "stream"
        if scheme.lower() in FILE_SCHEMES:
            return "file"
        raise NodeError(f"device {device!r}: unsupported URL scheme {scheme!r} "
                        f"(known: {', '.join(FILE_SCHEMES + LIVE_SCHEMES)})")
    if device == TEST_PATTERN:
        return "test"
    if device.isdigit() or device.startswith("/dev/"):
        return "camera"
    path = Path(device).expanduser()
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "file"
    raise NodeError(f"device {device!r}: no such file or folder, and not a camera (0, 1, ..., /dev/videoN), "
                    f"a URL (http(s)://, rtsp://, srt://, udp://, tcp://) or {TEST_PATTERN!r} (the test pattern)")


class Webcam:
    """A camera through OpenCV: the frames it delivers, pts = seconds since the first one."""

    def __init__(self, device: str, width: int, height: int, fps: float,
                 allocate: Callable[[tuple[int, ...], Any], np.ndarray]):
        import cv2

        cv2.setLogLevel(0)  # silent: its backends' WARN/ERROR lines would mix with ours (cv2.utils.logging's level)
        self.device, self.allocate = device, allocate
        self.cap = cv2.VideoCapture(int(device) if device.isdigit() else device)
        if not self.cap.isOpened():
            raise NodeError(f"no camera at {device!r} (is one connected, and is this user allowed to open it?)")
        self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self.cap.set(cv2.CAP_PROP_FPS, fps)

    def frames(self) -> Iterator[Message]:
        import cv2

        start = None
        while True:
            ok, bgr = self.cap.read()
            if not ok:
                raise NodeError(f"camera {self.device!r} stopped delivering frames")
            now = time.time()
            start = now if start is None else start
            image = self.allocate(bgr.shape, np.uint8)
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=image)
            yield Message(pts=now - start, capture_ts=now, buffers={"image": image})

    def close(self) -> None:
        self.cap.release()


class CameraSource(Source):
    """Frames from a camera, a video file or stream, an image folder or the test pattern, named by `device`."""

    outputs = {"out": Port("video", doc="RGB uint8 frames; pts from the source (a camera: seconds since its "
                                        "first frame; a file: its own timestamps)")}
    source: Source | None = None  # the node that reads a file, stream, folder or the test pattern
    webcam: Webcam | None = None

    @dataclass
    class Params:
        device: str = param("0", "camera index (0, 1, ...) or path (/dev/video0), video file, folder of images, "
                                 "URL (http(s)://, rtsp://, srt://, udp://, tcp://), or `test` (the test pattern)")
        width: int = param(640, "camera: requested frame width (it may pick the nearest it has); test: the width")
        height: int = param(480, "camera: requested frame height; test: the height")
        fps: float = param(30.0, "camera: requested frame rate; folder and test: the rate frames are given at")
        frames: int = param(0, "frames to deliver; 0 = until stopped (or the end of a file that does not loop)")
        loop: bool = param(False, "file or folder: start again after the end (pts keep increasing)")

        def __post_init__(self) -> None:
            if not (16 <= self.width <= 8192 and 16 <= self.height <= 8192):
                raise ValueError(f"width/height must be in 16..8192, got {self.width}x{self.height}")
            if not 0 < self.fps <= 1000:
                raise ValueError(f"fps must be in (0, 1000], got {self.fps}")
            if self.frames < 0:
                raise ValueError(f"frames must be >= 0, got {self.frames}")
            if not self.device.strip():
                raise ValueError("device is empty (a camera index, a file, a folder, a URL or `test`)")

    def setup(self) -> None:
        p = self.params
        self.backend = backend_of(p.device)
        self.ctx.metrics.extra["backend"] = self.backend
        self.ctx.metrics.state = f"opening {p.device}"
        self.first = 0
        if self.backend == "camera":
            self.webcam = Webcam(p.device, p.width, p.height, p.fps,
                                 lambda shape, dtype: self.allocate("out", shape, dtype))
        else:
            self.source = self._delegate()
            self.source.setup()
        self.ctx.metrics.state = None

    def _delegate(self) -> Source:
        """The existing source node that reads what `device` names, paced like a camera where it is a file."""
        p = self.params
        if self.backend == "folder":
            return ImageFolderSource(ImageFolderSource.Params(path=p.device, fps=p.fps, loop=p.loop, realtime=True),
                                     self.ctx)
        if self.backend == "test":
            return SyntheticSource(SyntheticSource.Params(width=p.width, height=p.height, fps=p.fps, frames=p.frames,
                                                          realtime=True), self.ctx)
        return VideoSource(VideoSource.Params(path=p.device, loop=p.loop, realtime=self.backend == "file",
                                              audio=False), self.ctx)

    def length(self) -> int | None:
        """`frames` only: a file played here is a live feed (a `--for` run stops it, and that is no failure)."""
        return self.params.frames or None

    def skip_to(self, seq: int) -> None:
        self.first = seq
        if self.source is not None:  # a restarted file source resumes at its frame; a camera just goes on
            self.source.skip_to(seq)

    def frames(self) -> Iterator[Message]:
        frames = self.webcam.frames() if self.webcam is not None else \
            (item["out"] if isinstance(item, dict) else item for item in self.source.frames())
        return itertools.islice(frames, max(0, self.params.frames - self.first) if self.params.frames else None)

    def close(self) -> None:
        for backend in (self.webcam, self.source):
            if backend is not None:
                backend.close()
