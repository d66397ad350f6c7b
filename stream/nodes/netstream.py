"""Live network stream: H.264 in MPEG-TS (or FLV/RTSP...) to any URL FFmpeg writes, for ffplay,
VLC, OBS or a PyAV client.

Live settings by default: x264 `tune=zerolatency` with no B-frames (NVENC's low-latency tuning
when codec is h264_nvenc or auto on a GPU host) and a keyframe every `gop` frames so a viewer that
joins mid-stream sees a picture within a second. URLs:

    tcp://0.0.0.0:8554?listen=1   wait for one viewer to connect (ffplay tcp://HOST:8554)
    tcp://HOST:PORT               push to a listening server
    udp://HOST:PORT?pkt_size=1316 fire and forget (ffplay udp://@:PORT); multicast works too
    srt://..., rtmp://... (format flv), rtsp://... (format rtsp) where FFmpeg was built with them

With `?listen=1`, setup waits until the viewer connects (graphs with this sink use `latest` edges,
so the camera does not back up meanwhile).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from stream.message import Message
from stream.node import NodeError, Port, Sink
from stream.media import add_video_stream, rational, video_frame
from stream.params import param

#: MPEG-TS counts time in 90 kHz ticks.
_TIME_BASE = Fraction(1, 90_000)


class NetStreamSink(Sink):
    """H.264 over the network (MPEG-TS over TCP/UDP by default) with low-latency encoder settings."""

    inputs = {"in": Port("video")}

    @dataclass
    class Params:
        url: str = param("tcp://127.0.0.1:8554?listen=1", "where to send: tcp://...?listen=1, tcp://, udp://, srt://...")
        format: str = param("mpegts", "container: mpegts, flv (rtmp), rtsp, matroska...")
        codec: str = param("libx264", "libx264, h264_nvenc, or auto (NVENC where present, else x264)")
        bitrate: int = param(2_000_000, "video bits/s")
        preset: str = param("veryfast", "encoder preset")
        fps: float = param(30.0, "nominal frame rate (timestamps follow the frames' own pts)")
        gop: int = param(30, "frames between keyframes (how soon a joining viewer sees a picture)")
        timeout: float = param(0.0, "seconds to wait for a listening viewer or server; 0 = forever")

        def __post_init__(self) -> None:
            if "://" not in self.url:
                raise ValueError(f"url must look like tcp://host:port, got {self.url!r}")
            if self.bitrate <= 0 or self.gop <= 0 or not 0 < self.fps <= 1000:
                raise ValueError("bitrate, gop and fps must be > 0 (fps <= 1000)")

    def setup(self) -> None:
        import av

        p = self.params
        options = {"listen_timeout": str(int(p.timeout * 1000))} if p.timeout and "listen=1" in p.url else {}
        if p.timeout and "listen=1" not in p.url:
            options["timeout"] = str(int(p.timeout * 1e6))
        try:
            self.container = av.open(p.url, mode="w", format=p.format, options=options)
        except (OSError, av.error.FFmpegError, ValueError) as exc:
            raise NodeError(f"cannot open network output {p.url} ({p.format}): {exc}") from None
        self.stream: Any = None
        self.t0: float | None = None
        self.next_pts = 0

    def process(self, inputs: dict[str, Message]) -> None:
        msg = inputs["in"]
        p = self.params
        if self.stream is None:
            height, width = msg.buffers["image"].shape[:2]
            self.stream = add_video_stream(self.container, p.codec, rational(p.fps), _TIME_BASE, width, height,
                                           crf=None, preset=p.preset, bitrate=p.bitrate, low_latency=True, gop=p.gop)
            self.ticks = round(1 / (rational(p.fps) * _TIME_BASE))
        t = msg.pts if msg.pts is not None else msg.capture_ts
        self.t0 = t if self.t0 is None else self.t0
        pts = max(round((t - self.t0) / _TIME_BASE), self.next_pts)
        self.next_pts = pts + 1
        self._send(video_frame(msg.buffers["image"], self.stream, pts, self.ticks))

    def _send(self, frame: Any) -> None:
        import av

        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except (OSError, av.error.FFmpegError) as exc:  # the viewer or server went away
            raise NodeError(f"network output {self.params.url}: {exc}") from None

    def finish(self) -> None:
        if self.stream is not None:
            self._send(None)  # flush the encoder
        self.close()

    def close(self) -> None:
        import av

        if getattr(self, "container", None) is not None:
            container, self.container = self.container, None
            try:
                container.close()
            except (OSError, av.error.FFmpegError):
                pass  # the viewer left first: no trailer to deliver
