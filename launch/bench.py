"""`python -m launch bench NAME [ARGS]`: runs the benchmark ``bench/NAME.py`` (its ``main(argv)``)."""
from __future__ import annotations

import importlib
import pkgutil

import bench
from launch.command import Refused


def available() -> list[str]:
    """The benchmarks: the modules of the `bench` package (its subpackages hold baselines, not benchmarks)."""
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.ispkg and not m.name.startswith("_"))


def run(name: str, argv: list[str]) -> int:
    if name not in available():
        raise Refused(f"no benchmark {name!r} (available: {', '.join(available())})")
    return int(importlib.import_module(f"bench.{name}").main(argv))
