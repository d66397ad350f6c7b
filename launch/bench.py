"""`python -m launch bench WHAT [ARGS]`: runs launch/bench_WHAT.py, or the script bench/WHAT.py of a checkout."""
from __future__ import annotations

import importlib
import runpy
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "bench"


def available() -> list[str]:
    mods = [p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py")]
    scripts = [p.stem for p in SCRIPTS.glob("*.py")] if SCRIPTS.is_dir() else []
    return sorted(set(mods) | set(scripts))


def run(what: str, argv: list[str]) -> int:
    try:
        module = importlib.import_module(f"launch.bench_{what}")
    except ModuleNotFoundError as exc:
        if exc.name != f"launch.bench_{what}":
            raise
        script = SCRIPTS / f"{what}.py"
        if not script.is_file():
            print(f"error: no benchmark {what!r} (available: {', '.join(available())})", file=sys.stderr)
            return 2
        sys.argv = [str(script), *argv]
        runpy.run_path(str(script), run_name="__main__")
        return 0
    return module.run(argv)
