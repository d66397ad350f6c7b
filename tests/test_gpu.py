"""The CUDA paths: each node's own stream, events between streams, pinned copies, the NVENC probe, and a
graph whose neural nodes share one process on the GPU. Skipped without a CUDA device; `bash .ci/gpu`
runs them with the GPU benchmarks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml

from stream.media import write_video
from stream.devices import open_device
from stream.media import pick_encoder

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bash .ci/gpu)")


def test_each_node_works_on_its_own_stream():
    a, b = open_device("cuda:0"), open_device("cuda:0")
    assert a.is_cuda and a.stream != b.stream and a.stream != torch.cuda.default_stream()
    with a:
        assert torch.cuda.current_stream() == a.stream
    assert torch.cuda.current_stream() == torch.cuda.default_stream()


def test_frames_go_up_through_pinned_memory_and_come_back_intact():
    dev = open_device("cuda:0")
    frame = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    with dev:
        up = dev.tensor(frame)
        doubled = (up.to(torch.int32) * 2).clamp(max=255).to(torch.uint8)
    assert up.is_cuda
    np.testing.assert_array_equal(dev.to_numpy(doubled), np.minimum(frame.astype(np.int32) * 2, 255).astype(np.uint8))


def test_an_event_orders_the_consumer_stream_after_the_producer_stream():
    producer, consumer = open_device("cuda:0"), open_device("cuda:0")
    x = torch.randn(4096, 4096, device="cuda:0")
    torch.cuda.synchronize()
    with producer:
        y = x @ x  # long enough that a reader not ordered after it would see unfinished work
        for _ in range(8):
            y = y @ x / 64
    consumer.wait(producer.record())
    with consumer:
        total = y.sum()
    got = consumer.to_numpy(total)
    torch.cuda.synchronize()
    assert np.isclose(got, y.sum().item(), rtol=1e-5)


def test_the_encoder_probe_takes_nvenc_where_the_gpu_has_it_and_the_file_plays(tmp_path):
    codec = pick_encoder("auto", 640, 480)
    assert codec in ("h264_nvenc", "libx264")
    print(f"auto encoder on this GPU: {codec}")
    path = write_video(tmp_path / "probe.mp4", (np.full((480, 640, 3), i * 8, np.uint8) for i in range(30)), codec=codec)
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 30


def test_neural_nodes_grouped_on_the_gpu_run_the_demo(tmp_path):
    # avatar and stylizer in one process on cuda:0: tensors handed over in-process, each node on its stream
    graph = yaml.safe_load((REPO / "graphs" / "demo.yaml").read_text())
    for node in graph["nodes"]:
        if node["kind"] in ("avatar", "stylize"):
            node.update(device="cuda:0", group="gpu")
        if node["kind"] == "mannequin":
            node["params"]["frames"] = 30
    path = tmp_path / "demo_gpu.yaml"
    path.write_text(yaml.safe_dump(graph))
    report = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "launch", "run", str(path), "--quiet", "--report", str(report),
                        "--set", f"sink.path={tmp_path / 'demo.mp4'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    nodes = json.loads(report.read_text())["nodes"]
    assert nodes["avatar"]["in_process"] == nodes["style"]["in_process"] == "gpu"
    assert nodes["sink"]["extra"]["video_frames"] == 30
