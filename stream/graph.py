"""Graph files: YAML that names nodes, their parameters and placement, and the edges between them.

    name: demo
    policy: block                 # default edge policy: block (lossless) | latest (live)
    depth: 4                      # default bounded-queue depth per edge
    nodes:
      - name: source
        kind: synthetic
        params: {width: 640, height: 360, frames: 150}
      - name: invert
        kind: invert
        device: cpu               # cpu | cuda:N | auto
        group: work               # nodes sharing a group share one process
        restart: {max: 3, backoff: 0.5}
      - name: side
        kind: mosaic
        join: pts                 # pair inputs by timestamp (default: the kind's own, see stream/node.py)
      - {name: sink, kind: mp4, params: {path: out/demo.mp4}}
    edges:
      - source.out -> invert.in
      - {from: invert.out, to: sink.in, policy: latest, depth: 2}

Several hosts: a `hosts:` map (name -> {address, bind, port_base, peer_wait}) and `host:` per node; edges
between hosts then run over TCP with CurveZMQ keys from `security: {keys: DIR}`. Besides node
parameters, `--set` reaches these two: `hosts.NAME.FIELD=VALUE` and `security.keys=DIR`
(so node names `hosts` and `security` are reserved).
Every problem found is reported together, each naming the file and the node or edge.
"""
from __future__ import annotations

import graphlib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from stream.node import JOINS, Node
from stream.nodes import load_kind
from stream.params import ParamError, build_params

POLICIES = ("block", "latest")
RESERVED = ("hosts", "security")  # --set targets that are not nodes
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_EDGE = re.compile(r"^\s*([\w-]+)\.([\w-]+)\s*->\s*([\w-]+)\.([\w-]+)\s*$")
LOCAL_HOST = "local"


class GraphError(ValueError):
    """An invalid graph file; the message lists every problem with its node or edge."""

    def __init__(self, path: str, problems: list[str]):
        self.path, self.problems = path, problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s):\n{lines}")


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys instead of silently keeping the last one."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


@dataclass(frozen=True)
class RestartPolicy:
    max: int = 3          # restarts allowed before the job fails
    backoff: float = 0.5  # seconds before the first restart; doubles each time


@dataclass(frozen=True)
class HostSpec:
    name: str
    address: str = "127.0.0.1"  # where peers reach this host
    bind: str = "127.0.0.1"     # interface its cross-host inputs listen on
    port_base: int = 47100      # its cross-host inputs listen on port_base + k
    peer_wait: float = 30.0     # seconds it waits for a peer host to connect, or to return, before its run fails


@dataclass
class NodeSpec:
    name: str
    kind: str
    cls: type[Node]
    params: Any                   # the validated Params dataclass instance
    raw_params: dict[str, Any]
    device: str = "cpu"
    group: str | None = None
    host: str = LOCAL_HOST
    restart: RestartPolicy = RestartPolicy()
    join: str = "seq"             # how several inputs are paired (the kind's default unless the graph says)


@dataclass(frozen=True)
class EdgeSpec:
    src: str
    src_port: str
    dst: str
    dst_port: str
    policy: Literal["block", "latest"] = "block"
    depth: int = 4

    def __str__(self) -> str:
        return f"{self.src}.{self.src_port} -> {self.dst}.{self.dst_port}"


@dataclass
class GraphSpec:
    path: str
    name: str
    nodes: dict[str, NodeSpec]
    edges: list[EdgeSpec]
    hosts: dict[str, HostSpec] = field(default_factory=dict)
    keys_dir: Path | None = None
    description: str = ""

    def order(self) -> list[str]:
        """Node names in topological order (sources first)."""
        return list(_sorter(self.nodes, self.edges).static_order())

    def sinks(self) -> list[str]:
        return [n for n in self.nodes if not any(e.src == n for e in self.edges)]

    def sources(self) -> list[str]:
        return [n for n in self.nodes if not any(e.dst == n for e in self.edges)]


def parse_overrides(pairs: list[str], path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """['node.param=value', ...] -> {node: {param: value}}.

    A value reaches a string parameter exactly as typed (``take #2.mp4``, ``a: b``); any other
    parameter reads it as YAML (3, 0.5, true, [1, 2], null). ``node.param:=value`` reads YAML
    whatever the type (e.g. ``null`` for a parameter that is a string or None). The graph file at
    `path` says each node's kind, hence the type of each parameter.
    """
    kinds = _node_kinds(path)
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        as_yaml = key.endswith(":")
        node, dot, name = key.removesuffix(":").partition(".")
        if not eq or not dot or not node or not name:
            raise ValueError(f"--set {pair!r}: expected NODE.PARAM=VALUE (or NODE.PARAM:=YAML)")
        if not as_yaml and (not value or _takes_text(_override_hint(node, name, kinds))):
            out.setdefault(node, {})[name] = value
            continue
        try:
            out.setdefault(node, {})[name] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {pair!r}: not a YAML value ({exc})") from None
    return out


def _node_kinds(path: str | Path | None) -> dict[str, str]:
    """Node name -> kind in a graph file, as far as it can be read (load_graph reports its problems)."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path else None
    except (OSError, yaml.YAMLError):
        return {}
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    return {n["name"]: n["kind"] for n in nodes or [] if isinstance(n, dict)
            and isinstance(n.get("name"), str) and isinstance(n.get("kind"), str)}


def _override_hint(node: str, name: str, kinds: dict[str, str]) -> Any:
    """The declared type of what `--set node.name` sets (None where unknown)."""
    if node == "security":
        return str
    if node == "hosts":
        return typing.get_type_hints(HostSpec).get(name.partition(".")[2])
    try:
        return typing.get_type_hints(load_kind(kinds[node]).Params).get(name)
    except KeyError:
        return None


def _takes_text(hint: Any) -> bool:
    """Whether a parameter of this type takes a string: str, a union with str, a choice of strings."""
    args = typing.get_args(hint)
    if hint is str:
        return True
    if typing.get_origin(hint) is Literal:
        return all(isinstance(a, str) for a in args)
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and any(map(_takes_text, args))


def load_graph(path: str | Path, overrides: dict[str, dict[str, Any]] | None = None) -> GraphSpec:
    """Read and validate a graph file; raises GraphError listing every problem."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as stream:  # an open file: YAML's errors name it and its line
            doc = yaml.load(stream, Loader=_StrictLoader)
    except OSError as exc:
        raise GraphError(str(path), [f"cannot read graph file: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise GraphError(str(path), [f"not valid YAML: {exc}"]) from None
    return build_graph(doc, str(path), overrides or {}, base=path.parent)


def _is_number(value: Any, kind: type | tuple[type, ...] = (int, float)) -> bool:
    """A number of `kind`, not a bool (YAML's true is an int to Python)."""
    return isinstance(value, kind) and not isinstance(value, bool)


def _host_spec(name: Any, raw: Any, problems: list[str]) -> HostSpec | None:
    where = f"host {name!r}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a map {{address, bind, port_base}}, got {raw!r}")
        return None
    try:
        spec = HostSpec(name=name, **raw)
    except TypeError as exc:
        problems.append(f"{where}: {exc}")
        return None
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{where}: name must match {_NAME.pattern}")
    for field_name in ("address", "bind"):
        if not isinstance(getattr(spec, field_name), str):
            problems.append(f"{where}: {field_name} must be a host name or address, got {getattr(spec, field_name)!r}")
    if not _is_number(spec.port_base, int) or not 1 <= spec.port_base <= 65535:
        problems.append(f"{where}: port_base must be a TCP port in 1..65535, got {spec.port_base!r}")
    if not _is_number(spec.peer_wait) or not spec.peer_wait > 0:
        problems.append(f"{where}: peer_wait must be a number of seconds > 0, got {spec.peer_wait!r}")
    return spec


def _node_spec(i: int, raw: Any, overrides: dict, hosts: dict, problems: list[str]) -> NodeSpec | None:
    if not isinstance(raw, dict):
        problems.append(f"nodes[{i}]: must be a map with name and kind")
        return None
    name = raw.get("name")
    where = f"node {name!r}" if isinstance(name, str) else f"nodes[{i}]"
    unknown = sorted(set(raw) - {"name", "kind", "params", "device", "group", "host", "restart", "join"})
    if unknown:
        problems.append(f"{where}: unknown field(s) {unknown}")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{where}: name must match {_NAME.pattern}")
        return None
    kind = raw.get("kind")
    if not isinstance(kind, str):
        problems.append(f"{where}: missing kind")
        return None
    try:
        cls = load_kind(kind)
    except KeyError as exc:
        problems.append(f"{where}: {exc.args[0]}")
        return None
    raw_params = raw.get("params") or {}
    if not isinstance(raw_params, dict):
        problems.append(f"{where}: params must be a map")
        return None
    raw_params = {**raw_params, **overrides.get(name, {})}
    try:
        params = build_params(cls.Params, raw_params)
    except ParamError as exc:
        problems.append(f"{where} ({kind}): {exc}")
        params = None
    device = raw.get("device", "cpu")
    if not isinstance(device, str) or not re.match(r"^(cpu|auto|cuda(:\d+)?)$", device):
        problems.append(f"{where}: device must be cpu, auto or cuda:N, got {device!r}")
    host = raw.get("host", LOCAL_HOST)
    if hosts and host not in hosts:
        problems.append(f"{where}: unknown host {host!r} (hosts: {sorted(hosts)})")
    elif not hosts and host != LOCAL_HOST:
        problems.append(f"{where}: host {host!r} is not declared (the file has no hosts: map)")
    restart_raw = raw.get("restart") or {}
    try:
        if not isinstance(restart_raw, dict):
            raise TypeError("restart must be a map {max: N, backoff: SECONDS}")
        restart = RestartPolicy(**restart_raw)
        if not _is_number(restart.max, int) or restart.max < 0 or not _is_number(restart.backoff) or restart.backoff < 0:
            raise TypeError("max must be an integer >= 0 and backoff a number >= 0")
    except TypeError as exc:
        problems.append(f"{where}: bad restart policy {restart_raw!r}: {exc}")
        restart = RestartPolicy()
    group = raw.get("group")
    if group is not None and not (isinstance(group, str) and _NAME.match(group)):
        problems.append(f"{where}: group must match {_NAME.pattern}")
    join = raw.get("join", cls.join)
    if join not in JOINS:
        problems.append(f"{where}: join must be one of {', '.join(JOINS)}, got {join!r}")
    return NodeSpec(name=name, kind=kind, cls=cls, params=params, raw_params=raw_params, device=device,
                    group=group, host=host, restart=restart, join=join)


def _edge_spec(i: int, raw: Any, default_policy: str, default_depth: int, problems: list[str]) -> EdgeSpec | None:
    policy, depth = default_policy, default_depth
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - {"from", "to", "policy", "depth"})
        if unknown:
            problems.append(f"edges[{i}]: unknown field(s) {unknown}")
        text = f"{raw.get('from')} -> {raw.get('to')}"
        policy, depth = raw.get("policy", policy), raw.get("depth", depth)
    elif isinstance(raw, str):
        text = raw
    else:
        problems.append(f"edges[{i}]: must be 'a.out -> b.in' or a map with from/to")
        return None
    m = _EDGE.match(text)
    if not m:
        problems.append(f"edges[{i}] {text!r}: expected 'node.port -> node.port'")
        return None
    if policy not in POLICIES:
        problems.append(f"edge {text.strip()}: policy must be one of {POLICIES}, got {policy!r}")
        return None
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 1024:
        problems.append(f"edge {text.strip()}: depth must be an integer in 1..1024, got {depth!r}")
        return None
    return EdgeSpec(m[1], m[2], m[3], m[4], policy, depth)


def _check_edges(nodes: dict[str, NodeSpec], edges: list[EdgeSpec], broken: set[str], problems: list[str]) -> None:
    """Ports exist, types match, each input fed once, required inputs fed; edges touching a node
    that already has a reported problem (`broken`) are skipped rather than reported again."""
    fed: dict[tuple[str, str], EdgeSpec] = {}
    for e in edges:
        src, dst = nodes.get(e.src), nodes.get(e.dst)
        for end, spec in ((e.src, src), (e.dst, dst)):
            if spec is None and end not in broken:
                problems.append(f"edge {e}: unknown node {end!r}")
        if src is None or dst is None:
            fed.setdefault((e.dst, e.dst_port), e)
            continue
        out_port, in_port = src.cls.outputs.get(e.src_port), dst.cls.inputs.get(e.dst_port)
        if out_port is None:
            problems.append(f"edge {e}: {e.src} ({src.kind}) has no output {e.src_port!r} (outputs: {sorted(src.cls.outputs)})")
        if in_port is None:
            problems.append(f"edge {e}: {e.dst} ({dst.kind}) has no input {e.dst_port!r} (inputs: {sorted(dst.cls.inputs)})")
        if out_port and in_port and not in_port.accepts(out_port):
            problems.append(f"edge {e}: type mismatch, {e.src}.{e.src_port} gives {out_port.type} but {e.dst}.{e.dst_port} takes {in_port.type}")
        if (e.dst, e.dst_port) in fed:
            problems.append(f"edge {e}: input {e.dst}.{e.dst_port} is already fed by {fed[(e.dst, e.dst_port)]}")
        fed[(e.dst, e.dst_port)] = e
    for spec in nodes.values():
        for port_name, port in spec.cls.inputs.items():
            if port.required and (spec.name, port_name) not in fed:
                problems.append(f"node {spec.name!r} ({spec.kind}): required input {port_name!r} is not connected")


def _sorter(nodes: dict[str, NodeSpec], edges: list[EdgeSpec]) -> graphlib.TopologicalSorter:
    """The nodes with each edge's source before its destination (edges to unknown nodes left out)."""
    sorter = graphlib.TopologicalSorter({n: set() for n in nodes})
    for e in edges:
        if e.src in nodes and e.dst in nodes:
            sorter.add(e.dst, e.src)
    return sorter


def _find_cycle(nodes: dict[str, NodeSpec], edges: list[EdgeSpec]) -> list[str] | None:
    """One cycle as [a, b, ..., a] in the direction frames flow, from its node named first in the file; or None."""
    try:
        _sorter(nodes, edges).prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1][:-1]
        start = min(range(len(cycle)), key=lambda i: list(nodes).index(cycle[i]))
        return cycle[start:] + cycle[:start] + [cycle[start]]
    return None


def build_graph(doc: Any, path: str, overrides: dict[str, dict[str, Any]], base: Path = Path(".")) -> GraphSpec:
    """Validate a parsed graph document (see module docstring)."""
    if not isinstance(doc, dict):
        raise GraphError(path, ["the file must hold a map with 'nodes' and 'edges'"])
    problems: list[str] = []
    unknown = sorted(set(doc) - {"name", "description", "policy", "depth", "nodes", "edges", "hosts", "security"})
    if unknown:
        problems.append(f"unknown top-level field(s) {unknown}")
    default_policy, default_depth = doc.get("policy", "block"), doc.get("depth", 4)
    if default_policy not in POLICIES:
        problems.append(f"policy must be one of {POLICIES}, got {default_policy!r}")
        default_policy = "block"

    raw_hosts = doc.get("hosts") or {}
    if not isinstance(raw_hosts, dict):
        problems.append(f"hosts must be a map of host name -> {{address, bind, port_base}}, got {raw_hosts!r}")
        raw_hosts = {}
    raw_hosts = {name: dict(h) if isinstance(h, dict) else h for name, h in raw_hosts.items()}
    for key, value in overrides.get("hosts", {}).items():
        hname, _, fieldname = key.partition(".")
        if not isinstance(raw_hosts.get(hname), dict) or not fieldname:
            problems.append(f"--set hosts.{key}: expected hosts.NAME.FIELD with NAME one of {sorted(raw_hosts)}")
        else:
            raw_hosts[hname][fieldname] = value
    for key in sorted(set(overrides.get("security", {})) - {"keys"}):
        problems.append(f"--set security.{key}: only security.keys can be set")
    hosts = {hname: spec for hname, h in raw_hosts.items() if (spec := _host_spec(hname, h, problems))}
    security = doc.get("security") or {}
    if not isinstance(security, dict) or not isinstance(security.get("keys", ""), str):
        problems.append(f"security must be a map {{keys: DIR}}, got {security!r}")
        security = {}

    raw_nodes = doc.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise GraphError(path, problems + ["'nodes' must be a non-empty list"])
    nodes: dict[str, NodeSpec] = {}
    broken: set[str] = set()
    for i, raw in enumerate(raw_nodes):
        spec = _node_spec(i, raw, overrides, hosts, problems)
        if spec is None:
            if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                broken.add(raw["name"])
            continue
        if spec.name in nodes:
            problems.append(f"node {spec.name!r}: duplicate name")
            continue
        if spec.name in RESERVED:
            problems.append(f"node {spec.name!r}: the name is reserved (--set {spec.name}.* sets the graph's {spec.name})")
            continue
        nodes[spec.name] = spec
    for name in sorted(set(overrides) - set(nodes) - set(RESERVED)):
        problems.append(f"--set {name}.*: no node named {name!r}")

    raw_edges = doc.get("edges") or []
    if not isinstance(raw_edges, list):
        problems.append("'edges' must be a list")
        raw_edges = []
    edges = [e for i, raw in enumerate(raw_edges) if (e := _edge_spec(i, raw, default_policy, default_depth, problems))]
    _check_edges(nodes, edges, broken, problems)
    cycle = _find_cycle(nodes, edges)
    if cycle:
        problems.append(f"cycle: {' -> '.join(cycle)}")

    for spec in nodes.values():
        if spec.group and any(o.group == spec.group and o.host != spec.host for o in nodes.values()):
            problems.append(f"node {spec.name!r}: group {spec.group!r} spans several hosts")
    keys_dir = None
    if len({s.host for s in nodes.values()}) > 1:
        given = overrides.get("security", {}).get("keys")  # from the command line: relative to the working folder
        keys = given if given is not None else security.get("keys")
        if not keys:
            problems.append("nodes on several hosts need security: {keys: DIR} (make keys with `python -m launch keys DIR`)")
        else:
            keys_dir = (Path(keys) if given is not None else base / keys).resolve()
    if problems:
        raise GraphError(path, problems)
    return GraphSpec(path=path, name=str(doc.get("name") or Path(path).stem), nodes=nodes, edges=edges,
                     hosts=hosts, keys_dir=keys_dir, description=str(doc.get("description") or ""))
