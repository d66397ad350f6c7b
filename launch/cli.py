"""The command line: `python -m launch COMMAND ...` (also installed as `neural-stream`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from launch import avatar_tools, style_tools, tools
from stream.graph import GraphError, load_graph, parse_overrides


def _load(args: argparse.Namespace):
    overrides = parse_overrides(args.set or [])
    return load_graph(args.graph, overrides), overrides


def cmd_run(args: argparse.Namespace) -> int:
    from stream.supervisor import Supervisor

    graph, overrides = _load(args)
    sup = Supervisor(graph, overrides, host=args.host, duration=args.duration,
                     report_path=Path(args.report) if args.report else None, quiet=args.quiet)
    return sup.run()


def cmd_validate(args: argparse.Namespace) -> int:
    graph, _ = _load(args)
    print(f"{graph.path}: ok ({len(graph.nodes)} nodes, {len(graph.edges)} edges)")
    for e in graph.edges:
        print(f"  {e}  [{e.policy}, depth {e.depth}]")
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    from stream.nodes import builtin_kinds, load_kind
    from stream.params import describe_params

    for kind in sorted(builtin_kinds()):
        cls = load_kind(kind)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{kind}: {doc}")
        for direction, ports in (("in", cls.inputs), ("out", cls.outputs)):
            for name, port in ports.items():
                print(f"    {direction:<3} {name:<10} {port.type:<10} {'' if port.required else '(optional) '}{port.doc}")
        for name, type_name, default, pdoc in describe_params(cls.Params):
            print(f"    param {name:<14} {type_name:<8} = {default:<14} {pdoc}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from stream.security import make_keys

    made = make_keys(Path(args.dir), args.hosts)
    for path in made:
        print(f"wrote {path} (+ secret)")
    if not made:
        print("all key pairs already exist")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from launch import bench

    return bench.run(args.what, args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m launch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def graph_command(name: str, helptext: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=helptext)
        p.add_argument("graph", help="graph file (YAML)")
        p.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE", help="override a node parameter")
        return p

    run = graph_command("run", "run a graph")
    run.add_argument("--for", dest="duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    run.add_argument("--report", metavar="PATH", help="write a JSON report of the run here")
    run.add_argument("--host", default="local", help="with a multi-host graph: run the nodes placed on this host")
    run.add_argument("--quiet", action="store_true", help="no status line or progress bar")
    run.set_defaults(func=cmd_run)
    graph_command("validate", "check a graph file and print its edges").set_defaults(func=cmd_validate)
    sub.add_parser("nodes", help="list node kinds with their ports and parameters").set_defaults(func=cmd_nodes)
    keys = sub.add_parser("keys", help="make CurveZMQ key pairs for the hosts of a graph")
    keys.add_argument("dir")
    keys.add_argument("--hosts", nargs="+", required=True)
    keys.set_defaults(func=cmd_keys)
    for module in (tools, avatar_tools, style_tools):
        module.register(sub)
    bench = sub.add_parser("bench", help="benchmarks (transport, ...)")
    bench.add_argument("what")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (GraphError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
