"""Graph files: every validation error names the file and the offending node or edge."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stream.graph import GraphError, load_graph, parse_overrides

REPO = Path(__file__).resolve().parents[1]
GOOD = """
name: t
nodes:
  - {name: source, kind: synthetic, params: {width: 64, height: 48, frames: 5}}
  - {name: invert, kind: invert, group: work, restart: {max: 2, backoff: 0.1}}
  - {name: check, kind: integrity, group: work}
edges:
  - source.out -> invert.in
  - {from: invert.out, to: check.in, policy: latest, depth: 2}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "g.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _problems(tmp_path: Path, text: str, overrides=None) -> str:
    path = _write(tmp_path, text)
    with pytest.raises(GraphError) as info:
        load_graph(path, overrides)
    message = str(info.value)
    assert message.startswith(str(path))
    return message


def test_good_graph_loads_with_typed_params_and_policies(tmp_path):
    g = load_graph(_write(tmp_path, GOOD))
    assert g.nodes["source"].params.width == 64 and g.nodes["source"].params.fps == 30.0
    assert [(e.policy, e.depth) for e in g.edges] == [("block", 4), ("latest", 2)]
    assert g.order() == ["source", "invert", "check"]
    assert g.nodes["invert"].restart.max == 2 and g.nodes["check"].group == "work"


def test_overrides_replace_params(tmp_path):
    g = load_graph(_write(tmp_path, GOOD), parse_overrides(["source.width=128", "source.realtime=true"]))
    assert g.nodes["source"].params.width == 128 and g.nodes["source"].params.realtime is True


@pytest.mark.parametrize("edit, expected", [
    (("kind: invert", "kind: nope"), "node 'invert': unknown kind 'nope'"),
    (("source.out -> invert.in", "source.video -> invert.in"), "source (synthetic) has no output 'video'"),
    (("to: check.in", "to: check.input"), "check (integrity) has no input 'input'"),
    (("name: check, kind: integrity", "name: source, kind: integrity"), "node 'source': duplicate name"),
    (("width: 64", "width: -5"), "node 'source' (synthetic): width/height must be in 1..8192"),
    (("width: 64", "width: wide"), "node 'source' (synthetic): width must be an integer"),
    (("width: 64", "colour: 64"), "unknown parameter(s) ['colour']"),
    (("policy: latest", "policy: newest"), "policy must be one of"),
    (("depth: 2", "depth: 0"), "depth must be an integer in 1..1024"),
    (("backoff: 0.1", "backoff: -1"), "bad restart policy"),
    (("group: work, restart", "device: tpu, restart"), "device must be cpu, auto or cuda:N"),
    (("source.out -> invert.in", "source.out => invert.in"), "expected 'node.port -> node.port'"),
    (("source.out -> invert.in", "source.out -> ghost.in"), "unknown node 'ghost'"),
])
def test_each_problem_is_reported(tmp_path, edit, expected):
    old, new = edit
    assert old in GOOD
    assert expected in _problems(tmp_path, GOOD.replace(old, new))


def test_unconnected_required_input(tmp_path):
    msg = _problems(tmp_path, GOOD.replace("  - source.out -> invert.in\n", ""))
    assert "node 'invert' (invert): required input 'in' is not connected" in msg


def test_cycle_is_named(tmp_path):
    msg = _problems(tmp_path, """
        nodes:
          - {name: a, kind: invert}
          - {name: b, kind: invert}
        edges: [a.out -> b.in, b.out -> a.in]
    """)
    assert "cycle: a -> b -> a" in msg


def test_port_type_mismatch(tmp_path):
    msg = _problems(tmp_path, """
        nodes:
          - {name: m, kind: mannequin}
          - {name: check, kind: integrity}
        edges: [m.keypoints -> check.in]
    """)
    assert "type mismatch, m.keypoints gives keypoints but check.in takes video" in msg


def test_input_fed_twice(tmp_path):
    msg = _problems(tmp_path, GOOD + "  - source.out -> check.in\n")
    assert "input check.in is already fed by invert.out -> check.in" in msg


def test_duplicate_yaml_keys_are_refused(tmp_path):
    assert "duplicate key 'width'" in _problems(tmp_path, GOOD.replace("width: 64,", "width: 64, width: 32,"))


def test_override_for_unknown_node(tmp_path):
    assert "no node named 'ghost'" in _problems(tmp_path, GOOD, parse_overrides(["ghost.x=1"]))


def test_several_problems_are_reported_together(tmp_path):
    msg = _problems(tmp_path, GOOD.replace("kind: invert", "kind: nope").replace("width: 64", "width: -1"))
    assert "2 problem(s)" in msg


def test_multi_host_graph_needs_keys(tmp_path):
    msg = _problems(tmp_path, """
        hosts: {a: {}, b: {}}
        nodes:
          - {name: s, kind: synthetic, host: a}
          - {name: c, kind: integrity, host: b}
        edges: [s.out -> c.in]
    """)
    assert "need security: {keys: DIR}" in msg


def test_cli_validate_exits_non_zero_with_the_message(tmp_path):
    path = _write(tmp_path, GOOD.replace("kind: invert", "kind: nope"))
    r = subprocess.run([sys.executable, "-m", "launch", "validate", str(path)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown kind 'nope'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "launch", "validate", str(REPO / "graphs" / "demo.yaml")], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("path", sorted((REPO / "graphs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_graph_is_valid(path):
    g = load_graph(path)
    assert g.nodes and g.sinks() and g.sources()


def test_set_reaches_hosts_and_keys_and_names_what_it_cannot(tmp_path):
    text = """
        hosts:
          laptop: {address: 127.0.0.1}
          render: {address: 127.0.0.1, port_base: 47100}
        security: {keys: keys}
        nodes:
          - {name: source, kind: synthetic, host: laptop}
          - {name: check, kind: integrity, host: render}
        edges: [source.out -> check.in]
    """
    path = _write(tmp_path, text)
    g = load_graph(path, parse_overrides(["hosts.render.address=10.0.0.5", "hosts.render.port_base=47200",
                                          "security.keys=elsewhere/keys"]))
    assert (g.hosts["render"].address, g.hosts["render"].port_base) == ("10.0.0.5", 47200)
    assert g.keys_dir == (Path.cwd() / "elsewhere" / "keys").resolve()  # the command line's path: from here
    assert load_graph(path).keys_dir == (tmp_path / "keys").resolve()   # the file's: from the file
    msg = _problems(tmp_path, text, parse_overrides(["hosts.gpu.address=1.2.3.4", "hosts.render.colour=red",
                                                     "security.cipher=x"]))
    assert "--set hosts.gpu.address: expected hosts.NAME.FIELD with NAME one of ['laptop', 'render']" in msg
    assert "host 'render'" in msg and "colour" in msg and "only security.keys can be set" in msg
    assert "name is reserved" in _problems(tmp_path, GOOD.replace("name: check", "name: hosts"))


BASE = """
nodes:
  - {name: s, kind: synthetic%s}
  - {name: c, kind: discard%s}
edges: [s.out -> c.in]
"""


@pytest.mark.parametrize("extra, node_s, node_c, expected", [
    ("", ", host: gpu", "", "node 's': host 'gpu' is not declared (the file has no hosts: map)"),
    ("hosts: [a, b]\n", "", "", "hosts must be a map of host name"),
    ("hosts: {gpu: 5}\n", "", "", "host 'gpu': must be a map {address, bind, port_base}, got 5"),
    ("hosts: {a: {}, b: {}}\nsecurity: [k]\n", ", host: a", ", host: b", "security must be a map {keys: DIR}"),
    ("hosts: {a: {port_base: 99999}}\n", ", host: a", ", host: a", "host 'a': port_base must be a TCP port in 1..65535, got 99999"),
    ("hosts: {a: {address: 5}}\n", ", host: a", ", host: a", "host 'a': address must be a host name or address, got 5"),
    ("", ", restart: {max: true}", "", "node 's': bad restart policy {'max': True}: max must be an integer"),
    ("", ", restart: [1]", "", "node 's': bad restart policy [1]: restart must be a map"),
])
def test_malformed_hosts_security_and_restart_are_named_not_tracebacks(tmp_path, extra, node_s, node_c, expected):
    # each of these used to pass validation or end in a Python traceback
    assert expected in _problems(tmp_path, extra + BASE % (node_s, node_c))


def test_yaml_errors_name_the_file(tmp_path):
    msg = _problems(tmp_path, "nodes:\n  - {name: a\n")
    assert f'in "{tmp_path / "g.yaml"}", line 2' in msg and "<unicode string>" not in msg


def test_a_kind_is_never_imported_from_the_working_folder(tmp_path):
    # a graph file runs the code its `module:Class` kinds name: a downloaded graph must not run a module
    # lying next to it; the same module is found once the user names its folder on PYTHONPATH
    (tmp_path / "evil.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('ran').touch()\n"
        "from stream.node import Port, Sink\nclass Evil(Sink):\n    inputs = {'in': Port()}\n\n"
        "    def process(self, inputs):\n        pass\n")
    path = _write(tmp_path, "nodes:\n  - {name: s, kind: synthetic}\n  - {name: c, kind: 'evil:Evil'}\nedges: [s.out -> c.in]\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-m", "launch", "validate", str(path)], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "module 'evil' would come from" in r.stderr and "not an installed package or a PYTHONPATH folder" in r.stderr
    assert not (tmp_path / "ran").exists()
    r = subprocess.run([sys.executable, "-m", "launch", "validate", str(path)], cwd=tmp_path,
                       env={**env, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ran").exists()
