"""PyAV plumbing shared by the capture and encoder nodes: opening inputs, configuring encoders,
audio frames <-> messages, and output files that only appear under their name once complete.

Kept in one place so that the file encoder, the network streamer and the benchmark's plain
PyAV baseline configure x264 identically (the benchmark compares like with like).

What a player shows of an input travels with the frames as meta (`picture_meta`): the display
rotation is applied at the source (every node sees the upright picture, the output needs no
display matrix), the sample aspect ratio and the colour description (primaries, transfer, matrix,
range) are written to the output, and RGB <-> YUV conversions use the input's matrix and range in
both directions, so colours survive a re-render (a saturated BT.709 green of 254 comes out 252;
untagged and BT.601-coded, as before, a BT.709 player showed 214).
"""
from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from stream.message import Message
from stream.node import NodeError

#: FFmpeg options per encoder family for a live (low-latency) stream: no B-frames, no lookahead.
_LOW_LATENCY = {
    "libx264": {"tune": "zerolatency", "bf": "0"},
    "h264_nvenc": {"tune": "ll", "zerolatency": "1", "bf": "0", "delay": "0"},
}
#: Tried in order when a graph asks for codec "auto".
AUTO_CODECS = ("h264_nvenc", "libx264")
#: FFmpeg's matrix codes (AVColorSpace) -> swscale's names for them; others use swscale's default.
_SWS_MATRIX = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020"}
#: The colour description a frame carries (AVColorSpace, AVColorRange, AVColorPrimaries, AVColorTransferCharacteristic).
COLOUR_FIELDS = ("colorspace", "color_range", "color_primaries", "color_trc")
_UNSPECIFIED, _UNSPECIFIED_RANGE = 2, 0  # AVCOL_SPC_UNSPECIFIED, AVCOL_RANGE_UNSPECIFIED
#: Demuxers of single pictures: FFmpeg opens a PNG or JPEG as a one-frame video.
_STILL_DEMUXERS = ("image2",)

log = logging.getLogger(__name__)


def open_input(path: str, timeout_s: float = 10.0) -> Any:
    """An av input container for a file or URL (rtsp://, http://, udp://...), or NodeError saying why not."""
    import av

    is_url = "://" in path
    if not is_url and not Path(path).is_file():
        raise NodeError(f"input file not found: {path}")
    options = {}
    if is_url:
        options["timeout"] = str(int(timeout_s * 1e6))  # microseconds, for network protocols
        if path.startswith("rtsp://"):
            options["rtsp_transport"] = "tcp"
    try:
        return av.open(path, mode="r", options=options, timeout=timeout_s if is_url else None)
    except (av.error.FFmpegError, OSError) as exc:
        raise NodeError(f"cannot open {path}: {exc} (truncated, corrupt or not a media file?)") from None


def still_image(container: Any) -> bool:
    """Whether FFmpeg opened a still picture (PNG, JPEG, TIFF...: the image2 / *_pipe demuxers), not a video."""
    name = container.format.name
    return name in _STILL_DEMUXERS or name.endswith("_pipe")


def video_stream(container: Any, path: str) -> Any:
    """The first video stream of an opened input, or NodeError saying why there is none to decode: a
    still picture, no video stream, or a codec this FFmpeg cannot decode."""
    if still_image(container):
        raise NodeError(f"{path} is a still image, not a video (a folder of images is the `images` source)")
    if not container.streams.video:
        raise NodeError(f"{path}: no video stream")
    video = container.streams.video[0]
    if video.codec_context is None:  # PyAV leaves it unset where FFmpeg has no decoder
        raise NodeError(f"{path}: unsupported video codec (this FFmpeg has no decoder for it)")
    return video


def picture_meta(frame: Any, stream: Any) -> dict[str, Any]:
    """How a player shows `stream` (from its first decoded `frame`): quarter turns to apply (`rotate`,
    counter-clockwise, from the display matrix), sample aspect (`sar`, [num, den], of the upright
    picture) and colour description (`colour`: FFmpeg's codes per COLOUR_FIELDS)."""
    turns = round(frame.rotation / 90) % 4 if frame.rotation else 0
    if frame.rotation and frame.rotation % 90:
        log.warning("display rotation of %s degrees is not a quarter turn: rotated by %d", frame.rotation, turns * 90)
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    if sar and turns % 2:
        sar = 1 / sar
    colour = {k: int(getattr(frame, k)) for k in COLOUR_FIELDS}
    if frame.format.is_rgb or colour["colorspace"] not in _SWS_MATRIX:  # no YUV matrix swscale can apply both ways
        colour.update(colorspace=_UNSPECIFIED, color_range=_UNSPECIFIED_RANGE)
    return {"rotate": turns, "sar": [sar.numerator, sar.denominator] if sar else None, "colour": colour}


def upright_rgb(frame: Any, picture: dict[str, Any]) -> np.ndarray:
    """The RGB picture a player shows for `frame`: decoded with the input's own matrix and range
    (said explicitly, so swscale never falls back to BT.601 for a tagged input), then rotated."""
    colour = picture["colour"]
    image = frame.to_ndarray(format="rgb24", src_colorspace=_SWS_MATRIX.get(colour["colorspace"]),
                             src_color_range=colour["color_range"] or None)
    return np.ascontiguousarray(np.rot90(image, picture["rotate"])) if picture["rotate"] else image


def rational(value: float | Fraction) -> Fraction:
    """A frame rate as an exact fraction (29.97 -> 30000/1001)."""
    return Fraction(value).limit_denominator(1001)


def encoder_options(codec: str, crf: int | None, preset: str | None, bitrate: int | None,
                    low_latency: bool) -> tuple[dict[str, str], int | None]:
    """(FFmpeg private options, bit_rate) for `codec`: constant quality by crf, or a target bitrate."""
    options: dict[str, str] = {}
    if preset:
        options["preset"] = preset if codec != "h264_nvenc" or preset.startswith("p") else "p4"
    if bitrate is None and crf is not None:
        options["crf" if codec != "h264_nvenc" else "cq"] = str(crf)
    if low_latency:
        options.update(_LOW_LATENCY.get(codec, {}))
    return options, bitrate


def pick_encoder(codec: str, width: int, height: int) -> str:
    """`codec` itself, or for "auto" the first of AUTO_CODECS that opens here (NVENC needs an NVIDIA GPU
    with an encoder and its driver; trying costs a few milliseconds)."""
    import av

    if codec != "auto":
        return codec
    for name in AUTO_CODECS:
        try:
            ctx = av.CodecContext.create(name, "w")
            ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = width, height, "yuv420p", Fraction(1, 30)
            ctx.open()
            return name
        except (ValueError, av.error.FFmpegError, RuntimeError):
            continue
    raise NodeError(f"none of the encoders {AUTO_CODECS} can be opened here")


def add_video_stream(container: Any, codec: str, rate: Fraction, time_base: Fraction, width: int, height: int,
                     crf: int | None = 20, preset: str | None = "veryfast", bitrate: int | None = None,
                     low_latency: bool = False, gop: int | None = None, sar: list[int] | None = None,
                     colour: dict[str, int] | None = None) -> Any:
    """A configured, opened H.264 (or other) video stream; codec "auto" prefers NVENC where a GPU has it.

    `sar` and `colour` (from `picture_meta`) are written to the stream, so players show the output
    as they showed the input. An odd size is padded by one (the last column/row repeated, see
    `video_frame`) with a warning: 4:2:0 chroma covers 2x2 pixels, so H.264 in yuv420p (what every
    player plays) can neither code nor crop to an odd size; 4:4:4 could, but browsers and phones
    do not play it, and cropping would lose input pixels."""
    import av

    even_w, even_h = width + width % 2, height + height % 2
    if (even_w, even_h) != (width, height):
        log.warning("%s: %dx%d is odd, H.264 in yuv420p needs even sizes: written as %dx%d (last column/row "
                    "repeated)", container.name, width, height, even_w, even_h)
    name = pick_encoder(codec, even_w, even_h)
    try:
        stream = container.add_stream(name, rate=rate)
        stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
        stream.codec_context.time_base = time_base
        stream.time_base = time_base
        if sar:
            stream.codec_context.sample_aspect_ratio = Fraction(*sar)
        for key, value in (colour or {}).items():
            setattr(stream.codec_context, key, value)
        options, bit_rate = encoder_options(name, crf, preset, bitrate, low_latency)
        stream.options = options
        if bit_rate:
            stream.bit_rate = bit_rate
        if gop:
            stream.codec_context.gop_size = gop
        stream.codec_context.open()  # fail here (no GPU, bad option), not at the first frame
        return stream
    except (ValueError, av.error.FFmpegError, RuntimeError) as exc:
        raise NodeError(f"video encoder {name!r} cannot be used here: {exc}") from None


def video_frame(image: np.ndarray, stream: Any, pts: int, duration: int, colour: dict[str, int] | None = None) -> Any:
    """An av.VideoFrame of the RGB `image` fitted to the stream's size (cropped, or padded by repeating
    the last column/row), stamped in its time base and converted to the stream's pixel format with
    `colour`'s matrix and range (the ones its stream is tagged with), else swscale's defaults."""
    import av

    image = image[: stream.height, : stream.width]
    pad_h, pad_w = stream.height - image.shape[0], stream.width - image.shape[1]
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    if colour:
        frame = frame.reformat(format=stream.pix_fmt, dst_colorspace=_SWS_MATRIX.get(colour["colorspace"]),
                               src_color_range="JPEG", dst_color_range=colour["color_range"] or None)
        for key, value in colour.items():
            setattr(frame, key, value)
    frame.pts, frame.time_base, frame.duration = pts, stream.codec_context.time_base, duration
    return frame


def add_audio_stream(container: Any, rate: int, layout: str, codec: str = "aac", bitrate: int = 128_000,
                     language: str | None = None) -> Any:
    import av

    try:
        stream = container.add_stream(codec, rate=rate, layout=layout)
    except (ValueError, av.error.FFmpegError) as exc:
        raise NodeError(f"audio encoder {codec!r} cannot be used here: {exc}") from None
    stream.bit_rate = bitrate
    stream.time_base = Fraction(1, rate)
    if language:
        stream.metadata["language"] = language
    return stream


def audio_message(frames: list[Any], track: int = 0) -> Message:
    """Consecutive decoded audio frames of audio track `track` as one message: buffers["audio"] is
    (channels, samples) planar (float32 for the usual AAC/Opus decoders), pts is the first frame's,
    and meta says which track and how to rebuild them (sample format, layout, rate)."""
    first = frames[0]
    planes = [f.to_ndarray() for f in frames]
    if not first.format.is_planar:  # packed (1, samples*channels) -> planar (channels, samples)
        planes = [p.reshape(-1, len(first.layout.channels)).T for p in planes]
    audio = np.ascontiguousarray(np.concatenate(planes, axis=1))
    return Message(pts=float(first.time) if first.pts is not None else None,
                   buffers={"audio": audio},
                   meta={"track": track, "sample_rate": first.sample_rate, "layout": first.layout.name,
                         "format": first.format.name if first.format.is_planar else first.format.planar.name})


def audio_frame(msg: Message) -> Any:
    """The av.AudioFrame for an audio message made by `audio_message` (copied: wire buffers are read-only)."""
    import av

    audio = np.array(msg.buffers["audio"], copy=True, order="C")
    frame = av.AudioFrame.from_ndarray(audio, format=msg.meta["format"], layout=msg.meta["layout"])
    frame.sample_rate = int(msg.meta["sample_rate"])
    return frame


class AtomicOutput:
    """An output written as NAME.part and renamed to NAME only by `commit()`: a crashed, killed or
    failed job never leaves a file that looks complete (the .part stays as evidence, unless the
    writer `discard()`s it, as it does when writing itself failed: a full disk must not stay full)."""

    def __init__(self, path: str):
        self.final = Path(path)
        self.partial = self.final.with_name(self.final.name + ".part")
        if self.final.is_dir():  # found now, not by the rename after the whole encode
            raise NodeError(f"cannot write {self.final}: it is a folder")
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NodeError(f"cannot create the folder of {self.final}: {exc}") from None
        if not os.access(self.final.parent, os.W_OK):
            raise NodeError(f"cannot write {self.final}: folder {self.final.parent} is not writable")

    def commit(self) -> None:
        os.replace(self.partial, self.final)

    def discard(self) -> None:
        self.partial.unlink(missing_ok=True)


def probe(path: str) -> dict[str, Any]:
    """What a file holds, by decoding all of it: video frame pts (s), size, audio span (s).
    Used to verify re-renders (tests, the benchmark), not by the nodes themselves."""
    with open_input(path) as container:
        video = container.streams.video[0]
        pts = [float(f.time) for f in container.decode(video)]
        info: dict[str, Any] = {"frames": len(pts), "pts": pts, "width": video.width, "height": video.height,
                                "audio": None}
    with open_input(path) as container:
        if container.streams.audio:
            frames = list(container.decode(audio=0))
            info["audio"] = {"start": float(frames[0].time), "end": float(frames[-1].time) + frames[-1].samples / frames[-1].sample_rate,
                             "sample_rate": frames[0].sample_rate, "channels": len(frames[0].layout.channels)}
    return info


def write_video(path: Path, images: Iterable[np.ndarray], codec: str = "libx264", fps: int = 30,
                options: dict[str, str] | None = None, *, pix_fmt: str = "yuv420p", encoder: dict[str, str] | None = None,
                audio_tracks: int = 0, rotation: int | None = None, sar: Fraction | None = None,
                colour: dict[str, int] | None = None) -> Path:
    """`images` (RGB uint8, all one size) as a video file, one frame each, pts 0, 1, 2...; ``options``
    for the container (e.g. ``movflags=faststart``: the index first, so a truncated copy still opens),
    `encoder` for the video encoder (e.g. ``preset``, ``crf``). What phones and broadcasters write, on request: `audio_tracks` AAC stereo tracks at 48 kHz (track
    k a sine of 440 * (k + 1) Hz), a display `rotation` (degrees counter-clockwise), a sample aspect
    `sar`, a `colour` description (FFmpeg's codes; BT.709 limited range converts the frames with that
    matrix). Made for tests and benchmarks, which need real files of known content."""
    import av

    rate = 48_000
    with av.open(str(path), "w", options=options or {}) as c:
        s, audio, sample = None, [], 0
        for i, image in enumerate(images):
            if s is None:
                s = c.add_stream(codec, rate=fps)
                s.height, s.width = image.shape[:2]
                s.pix_fmt = pix_fmt  # an odd size needs one without subsampling (rgb24 with libx264rgb)
                s.options = encoder or {}
                if sar:
                    s.codec_context.sample_aspect_ratio = sar
                for key, value in (colour or {}).items():
                    setattr(s.codec_context, key, value)
                if rotation is not None:
                    s.set_display_rotation(rotation)
                audio = [c.add_stream("aac", rate=rate, layout="stereo") for _ in range(audio_tracks)]
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if colour:
                frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
            frame.pts = i
            for packet in s.encode(frame):
                c.mux(packet)
            while audio and sample < (i + 1) * rate / fps:
                for k, stream in enumerate(audio):
                    t = np.arange(sample, sample + 1024) / rate
                    wave = (0.3 * np.sin(2 * np.pi * 440 * (k + 1) * t)).astype(np.float32)
                    chunk = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
                    chunk.sample_rate, chunk.pts = rate, sample
                    for packet in stream.encode(chunk):
                        c.mux(packet)
                sample += 1024
        for stream in (s, *audio):
            for packet in stream.encode():
                c.mux(packet)
    return path
