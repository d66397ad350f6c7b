"""The command line: `python -m launch COMMAND ...` (also installed as `neural-stream`)."""
from __future__ import annotations

import argparse
import logging
from importlib import metadata
from pathlib import Path

from launch import avatar_tools, batch, style_tools, style_training, stylize_avatar, tools, universal_tools
from launch.command import Exit, Refused, exit_table, refusing
from launch.shipped import graph_file, shipped_graphs
from stream.graph import GraphError, GraphSpec, load_graph, parse_overrides
from stream.logs import configure_logging
from stream.preflight import check_graph

log = logging.getLogger("launch")
LOG_LEVELS = ("debug", "info", "warning", "error")


def _load(args: argparse.Namespace) -> tuple[GraphSpec, dict]:
    with refusing(GraphError, ValueError):
        path = graph_file(args.graph)
        overrides = parse_overrides(args.set or [], path)
        return load_graph(path, overrides), overrides


def _outputs(graph: GraphSpec, host: str) -> list[tuple[str, str]]:
    """(sink, file) for the sinks of this host that write a file (a `path` parameter)."""
    return [(name, str(Path(spec.params.path).resolve())) for name, spec in graph.nodes.items()
            if name in graph.sinks() and spec.host == host and isinstance(getattr(spec.params, "path", None), str)]


def cmd_run(args: argparse.Namespace) -> int:
    from stream.supervisor import Supervisor

    graph, overrides = _load(args)
    with refusing(ValueError):  # a host the graph places no node on
        sup = Supervisor(graph, overrides, host=args.host, duration=args.duration,
                         report_path=Path(args.report) if args.report else None, quiet=args.quiet,
                         overwrite=args.overwrite)
    code = sup.run()
    if code == Exit.OK:
        for name, path in _outputs(graph, sup.host):
            print(f"{name}: wrote {path}")
        if args.report:
            print(f"report: {Path(args.report).resolve()}")
    return code


def cmd_validate(args: argparse.Namespace) -> int:
    graph, _ = _load(args)
    if problems := check_graph(graph, args.host, args.overwrite):  # what `run` would refuse: files and models named
        raise Refused(str(GraphError(graph.path, problems)))
    print(f"{graph.path}: ok ({len(graph.nodes)} nodes, {len(graph.edges)} edges)")
    for e in graph.edges:
        print(f"  {e}  [{e.policy}, depth {e.depth}]")
    return Exit.OK


def cmd_graphs(args: argparse.Namespace) -> int:
    for name, path in shipped_graphs().items():
        print(f"{name:<16} {load_graph(path).description}")
    return Exit.OK


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
    return Exit.OK


def cmd_keys(args: argparse.Namespace) -> int:
    from stream.security import make_keys

    made = make_keys(Path(args.dir), args.hosts)
    for path in made:
        print(f"wrote {path} (+ secret)")
    if not made:
        print("all key pairs already exist")
    return Exit.OK


def cmd_bench(args: argparse.Namespace) -> int:
    from launch import bench

    return bench.run(args.name, args.rest)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, epilog=exit_table(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {metadata.version('neural-stream')}")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                        help="diagnostics shown on stderr (default info)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def graph_command(name: str, helptext: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=helptext, epilog=exit_table(), formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("graph", help=f"graph file (YAML), or a shipped graph by name ({', '.join(shipped_graphs())})")
        p.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE", help="override a node parameter")
        p.add_argument("--overwrite", action="store_true",
                       help="replace output files that exist (otherwise the run is refused before any work)")
        return p

    run = graph_command("run", "run a graph")
    run.add_argument("--for", dest="duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    run.add_argument("--report", metavar="PATH", help="write a JSON report of the run here")
    run.add_argument("--host", default="local", help="with a multi-host graph: run the nodes placed on this host")
    run.add_argument("--quiet", action="store_true", help="no status line or progress bar")
    run.set_defaults(func=cmd_run)
    validate = graph_command("validate", "check a graph file (and the files and models it names) and print its edges")
    validate.add_argument("--host", help="with a multi-host graph: check the files of this host's nodes only "
                                         "(default: every node's)")
    validate.set_defaults(func=cmd_validate)
    sub.add_parser("graphs", help="list the shipped graphs (run them by name)").set_defaults(func=cmd_graphs)
    sub.add_parser("nodes", help="list node kinds with their ports and parameters").set_defaults(func=cmd_nodes)
    keys = sub.add_parser("keys", help="make CurveZMQ key pairs for the hosts of a graph")
    keys.add_argument("dir")
    keys.add_argument("--hosts", nargs="+", required=True)
    keys.set_defaults(func=cmd_keys)
    for module in (tools, avatar_tools, stylize_avatar, style_training, style_tools, universal_tools, batch):
        module.register(sub)
    bench = sub.add_parser("bench", help="run a benchmark of bench/ by name (an unknown name lists them)")
    bench.add_argument("name")
    bench.add_argument("rest", nargs=argparse.REMAINDER, metavar="ARGS", help="the benchmark's own options")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run one command; `prog` is how the user called us (the console script's name by default)."""
    args = build_parser(prog).parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(args.func(args))
    except Refused as exc:
        log.error("%s", exc)
        return Exit.REFUSED
