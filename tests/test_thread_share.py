"""The supervisor's thread share: the cores go to the nodes that compute, not equally to every process."""
from __future__ import annotations

from pathlib import Path

from stream.graph import LOCAL_HOST, build_graph, load_graph
from stream.supervisor import _groups, _thread_shares

REPO = Path(__file__).resolve().parents[1]


def test_the_live_stylizer_gets_the_cores_and_the_light_nodes_one_thread():
    graph = load_graph(REPO / "graphs" / "stylize_live.yaml")
    shares = _thread_shares(graph, _groups(graph, LOCAL_HOST), cores=2)
    assert shares == {"camera": 1, "small": 1, "style": 2, "display": 1, "preview": 1}
    assert _thread_shares(graph, _groups(graph, LOCAL_HOST), cores=16)["style"] == 16


def test_two_compute_nodes_split_the_cores_and_no_compute_node_shares_them_equally():
    doc = {"nodes": [{"name": "src", "kind": "synthetic", "params": {"frames": 1}},
                     {"name": "a", "kind": "stylize"}, {"name": "b", "kind": "stylize"},
                     {"name": "sink", "kind": "discard"}],
           "edges": ["src.out -> a.in", "a.out -> b.in", "b.out -> sink.in"]}
    graph = build_graph(doc, "two", {})
    assert _thread_shares(graph, _groups(graph, LOCAL_HOST), cores=2) == {"src": 1, "a": 1, "b": 1, "sink": 1}
    assert _thread_shares(graph, _groups(graph, LOCAL_HOST), cores=8) == {"src": 1, "a": 4, "b": 4, "sink": 1}
    light = build_graph({"nodes": [doc["nodes"][0], doc["nodes"][3]], "edges": ["src.out -> sink.in"]}, "light", {})
    assert _thread_shares(light, _groups(light, LOCAL_HOST), cores=8) == {"src": 4, "sink": 4}


def test_busy_nodes_without_a_torch_pool_take_their_share_of_the_cores():
    """avatar_rerender: pose (MediaPipe) and the compositor (inpainting) each keep a core busy, so the avatar's
    torch pool gets one of two cores beside them, not both; on 12 cores, 4 (one third)."""
    graph = load_graph(REPO / "graphs" / "avatar_rerender.yaml")
    shares = _thread_shares(graph, _groups(graph, LOCAL_HOST), cores=2)
    assert shares == {"source": 1, "pose": 1, "avatar": 1, "composite": 1, "sink": 1}
    assert _thread_shares(graph, _groups(graph, LOCAL_HOST), cores=12)["avatar"] == 4


def test_node_processes_let_waiting_openmp_threads_sleep_unless_the_environment_says():
    """Spinning OpenMP pools beside each other burned 124 s of CPU where 18 s did the work (runner docstring)."""
    import os
    import subprocess
    import sys

    probe = "import os; from stream.runner import _limit_cpu_threads; _limit_cpu_threads(1); print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    run = lambda e: subprocess.run([sys.executable, "-c", probe], env=e, cwd=REPO, capture_output=True, text=True,
                                   timeout=60, check=True).stdout.strip()
    assert run(env) == "PASSIVE"
    assert run({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
