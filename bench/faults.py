"""`python -m launch bench faults [--tries N]`: the fault and attack run of issue 12, re-run.

Real processes, real sockets on loopback, the real command line (`python -m launch run`), at the
issue's scale: SIGKILL of each node of a 3,000-frame lossless graph (and of an mp4 sink), inputs cut
at 40%, forged messages from a process outside the run, oversize messages, a missing key folder,
SIGKILL of the supervisor in its first second, SIGTERM of an unfinished job. Prints one line per
attack with what happened; docs/runtime.md holds the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq

from launch.media import media_root
from stream.media import write_video

CHAIN = """
nodes:
  - {{name: source, kind: synthetic, params: {{width: 320, height: 240, frames: 3000, realtime: false}}}}
  - {{name: mid, kind: invert}}
  - {{name: {sink}, kind: {kind}{params}}}
edges: [source.out -> mid.in, mid.out -> {sink}.in]
"""


class Run:
    """One `launch run` of a graph written to a scratch folder (TMPDIR too: its ipc sockets land there)."""

    def __init__(self, folder: Path, graph: str, *args: str):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "g.yaml").write_text(textwrap.dedent(graph))
        self.report_path = folder / "report.json"
        self.proc = subprocess.Popen([sys.executable, "-m", "launch", "run", str(folder / "g.yaml"), "--quiet",
                                      "--report", str(self.report_path), *args], env={**os.environ, "TMPDIR": str(folder)},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.started = time.monotonic()

    def child(self, node: str, timeout: float = 30) -> int:
        return wait_for(lambda: next((p for p, n in children(self.proc.pid).items() if n == f"ns:{node}"), None), timeout)

    def endpoint(self, name: str) -> str:
        return f"ipc://{wait_for(lambda: next(iter(self.folder.glob(f'ns-*/{name}')), None))}"

    def finish(self, timeout: float = 300) -> tuple[int, dict[str, Any], str, float]:
        _, err = self.proc.communicate(timeout=timeout)
        report = json.loads(self.report_path.read_text()) if self.report_path.exists() else {}
        return self.proc.returncode, report, err, time.monotonic() - self.started


def children(pid: int) -> dict[int, str]:
    out = {}
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out[int(d.name)] = (d / "comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            pass
    return out


def wait_for(predicate, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise TimeoutError("condition not reached")


def integrity(report: dict[str, Any]) -> str:
    check = report["nodes"]["check"]["extra"]
    return f"{check['frames']} frames, {check['gaps']} missing, {check['reordered']} repeated/reordered"


def crashes(tmp: Path, tries: int) -> None:
    for victim in ("mid", "source", "check"):
        for k in range(tries):
            run = Run(tmp / f"kill-{victim}-{k}", CHAIN.format(sink="check", kind="integrity", params=""))
            pid = run.child(victim)
            time.sleep(1.0 + 0.3 * k)
            os.kill(pid, signal.SIGKILL)
            code, report, _, _ = run.finish()
            log = report["nodes"][victim].get("restart_log", [])
            print(f"SIGKILL {victim:<6} try {k}: exit {code} {report['outcome']:<9} {integrity(report)}; "
                  f"restart log {log}")
    for k in range(tries):
        out = tmp / f"sink-{k}" / "out.mp4"
        run = Run(out.parent, CHAIN.format(sink="sink", kind="mp4", params=f", params: {{path: {out}, preset: ultrafast}}"))
        pid = run.child("sink")
        time.sleep(1.0 + 0.3 * k)
        os.kill(pid, signal.SIGKILL)
        code, report, _, _ = run.finish()
        print(f"SIGKILL mp4 sink try {k}: exit {code} {report['outcome']}; final file exists: {out.exists()}; "
              f"error: {report['nodes']['sink']['error']}")


def _clip(path: Path, codec: str, frames: int) -> Path:
    """A noise clip whose index is at the start (so a truncated copy still opens)."""
    images = (np.random.default_rng(i).integers(0, 256, (240, 320, 3), np.uint8) for i in range(frames))
    return write_video(path, images, codec, options={"movflags": "faststart"} if path.suffix == ".mp4" else None)


def truncated(tmp: Path) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    inputs = {"H.264 MP4": media_root() / "video" / "hybrik_taiji.mp4",
              "VP9 in MP4": _clip(tmp / "vp9.mp4", "libvpx-vp9", 230), "VP9 WebM": _clip(tmp / "vp9.webm", "libvpx-vp9", 230)}
    for name, full in inputs.items():
        cut = tmp / f"cut{full.suffix}"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 5])
        for on_error in ("skip", "fail"):
            out = tmp / "out.mp4"
            run = Run(tmp / name.replace(" ", "_"), (Path(__file__).parents[1] / "graphs" / "rerender.yaml").read_text(),
                      "--set", f"source.path={cut}", "--set", f"sink.path={out}", "--set", "sink.preset=ultrafast",
                      "--set", f"source.on_error={on_error}")
            code, report, _, _ = run.finish()
            print(f"40% of {name:<10} on_error={on_error}: exit {code}, final file: {out.exists()}; "
                  f"{report['nodes']['source']['error']}")


def _forged(seq: int, **fields: Any) -> bytes:
    return msgpack.packb({"v": 2, "stream": "", "seq": seq, "pts": None, "cap": 0.0, "eos": False, "meta": {},
                          "bufs": [], **fields})


def forged(tmp: Path) -> None:
    image = {"name": "image", "role": "image", "dtype": "uint8", "shape": [240, 320, 3]}
    graph = """
        nodes:
          - {{name: source, kind: synthetic, params: {{width: 320, height: 240, frames: 150, fps: 50, realtime: true}}}}
          - {{name: check, kind: integrity}}
        edges: [{{from: source.out, to: check.in, policy: {policy}}}]
    """
    ctx = zmq.Context()
    attacks = {
        "120 forged shm descriptors": ("block", [[_forged(s, bufs=[{**image, "shm": ["source.out", s % 12, 0, 0, s + 1]}])]
                                                  for s in range(120)]),
        "a forged end-of-stream": ("block", [[_forged(0, eos=True)]]),
        "seq 2**62 on a latest edge": ("latest", [[_forged(2 ** 62, bufs=[image]), bytes(240 * 320 * 3)]]),
        "4 messages without an image": ("block", [[_forged(s, bufs=[{**image, "name": "mask", "role": "mask"}]),
                                                   bytes(240 * 320 * 3)] for s in range(4)]),
    }
    for name, (policy, messages) in attacks.items():
        run = Run(tmp / name.replace(" ", "_"), graph.format(policy=policy))
        sock = ctx.socket(zmq.PUSH)
        sock.connect(run.endpoint("check.in"))
        time.sleep(0.5)
        for frames in messages:
            sock.send_multipart(frames)
        code, report, _, _ = run.finish()
        sock.close(linger=0)
        print(f"{name:<30}: exit {code} {report['outcome']}; {integrity(report)}; "
              f"rejected {report['nodes']['check']['rejected']}")
    run = Run(tmp / "oversize", graph.format(policy="block").replace("name: check, kind: integrity",
                                                                     "name: check, kind: integrity, params: {check_pixels: true}"))
    sock = ctx.socket(zmq.PUSH)
    sock.connect(run.endpoint("check.in"))
    check = run.child("check")
    for _ in range(6):
        sock.send(bytes(500 * 1024 * 1024), copy=False)
    time.sleep(3.0)
    status = Path(f"/proc/{check}/status").read_text()
    peak = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024
    code, report, _, _ = run.finish()
    sock.close(linger=0)
    print(f"six 500 MB messages          : exit {code}; {integrity(report)}; the consumer's peak memory {peak:.0f} MB")
    ctx.term()


def processes(tmp: Path) -> None:
    render = (Path(__file__).parents[1] / "graphs" / "telepresence.yaml")
    run = Run(tmp / "nokeys", render.read_text(), "--host", "render", "--set", f"security.keys={tmp / 'no-keys'}",
              "--for", "60")
    code, _, err, seconds = run.finish()
    print(f"telepresence --host render without keys: exit {code} after {seconds:.1f} s: {err.strip().splitlines()[-1]}")
    live = "nodes:\n  - {name: s, kind: synthetic, params: {width: 64, height: 48, frames: 0, realtime: true}}\n" \
           "  - {name: d, kind: discard}\nedges: [s.out -> d.in]\n"
    for k in range(4):
        run = Run(tmp / f"sigkill-{k}", live)
        wait_for(lambda: children(run.proc.pid))
        time.sleep(0.1 * k)
        run.proc.kill()
        run.proc.wait()
        time.sleep(2.0)
        marker = f"TMPDIR={run.folder}".encode()
        orphans = [d for d in Path("/proc").iterdir() if d.name.isdigit() and _has_env(d, marker)]
        print(f"SIGKILL of the supervisor at {0.1 * k:.1f} s after its first child: {len(orphans)} orphans")
    run = Run(tmp / "sigterm", CHAIN.format(sink="check", kind="integrity", params="").replace("realtime: false",
                                                                                                 "realtime: true"))
    run.child("check")
    time.sleep(2.0)
    os.killpg(run.proc.pid, signal.SIGTERM)
    code, report, _, _ = run.finish()
    print(f"SIGTERM of an unfinished offline job: exit {code} {report['outcome']}, restarts "
          f"{sum(n['restarts'] for n in report['nodes'].values())}")


def _has_env(proc: Path, marker: bytes) -> bool:
    try:
        return marker in (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench faults", description=__doc__.splitlines()[0])
    ap.add_argument("--tries", type=int, default=3, help="SIGKILLs of each node (default 3)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        crashes(Path(tmp) / "crash", args.tries)
        truncated(Path(tmp) / "truncated")
        forged(Path(tmp) / "forged")
        processes(Path(tmp) / "processes")
    return 0
