"""Built-in node kinds, imported only when a graph uses them (so listing kinds stays cheap).

A graph may also name any importable class as `kind: package.module:ClassName`.
"""
from __future__ import annotations

import importlib

BUILTIN: dict[str, str] = {
    "synthetic": "stream.nodes.synthetic:SyntheticSource",
    "invert": "stream.nodes.transform:Invert",
    "delay": "stream.nodes.transform:Delay",
    "integrity": "stream.nodes.integrity:IntegritySink",
    "discard": "stream.nodes.discard:DiscardSink",
    "mp4": "stream.nodes.mp4:Mp4Sink",
    "video": "stream.nodes.video_in:VideoSource",
    "camera": "stream.nodes.camera:CameraSource",
    "images": "stream.nodes.images:ImageFolderSource",
    "image_seq": "stream.nodes.images:ImageSequenceSink",
    "netstream": "stream.nodes.netstream:NetStreamSink",
    "zmq_pub": "stream.nodes.zmq_pub:ZmqPubSink",
    "preview": "stream.nodes.preview:PreviewSink",
    "window": "stream.nodes.window:WindowSink",
    "vcam": "stream.nodes.vcam:VirtualCameraSink",
    "composite": "stream.nodes.composite:Compositor",
    "mosaic": "stream.nodes.composite:Mosaic",
    "mannequin": "stream.nodes.mannequin:MannequinSource",
    "pose": "stream.nodes.pose:PoseNode",
    "bones": "stream.nodes.bones:BonesNode",
    "stylize": "stream.nodes.stylize:StylizeNode",
    "avatar": "stream.nodes.avatar:AvatarNode",
}


def load_kind(kind: str) -> type:
    """The node class for `kind`; KeyError with the known kinds when there is none."""
    target = BUILTIN.get(kind, kind if ":" in kind else None)
    if target is None:
        raise KeyError(f"unknown kind {kind!r} (known: {', '.join(sorted(BUILTIN))}; or module:Class)")
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise KeyError(f"kind {kind!r}: cannot import {target}: {exc}") from None
    cls.kind = kind
    return cls
