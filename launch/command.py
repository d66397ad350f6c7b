"""The convention every command follows: how it refuses, how it ends, what the command modules share.

A command does its work and returns `Exit.OK`, or raises `Refused` before doing any (bad input:
a missing or unreadable file, an invalid graph, the wrong kind of checkpoint), which
`launch.cli.main` logs as ``error: ...`` and turns into `Exit.REFUSED`, the code argparse gives
a malformed command line. A job that started and could not finish returns `Exit.FAILED`; one
stopped by a signal 128 + its number: `Exit.INTERRUPTED` (Ctrl-C), `Exit.TERMINATED` (SIGTERM),
the supervisor's codes (``stream.supervisor``).
"""
from __future__ import annotations

import contextlib
from enum import IntEnum
from typing import Iterator

NO_STEP_LIMIT = 10 ** 9  # --minutes without --steps: the time limit decides


class Exit(IntEnum):
    """Exit codes of every command (`python -m launch --help` shows the table)."""

    OK = 0
    FAILED = 1
    REFUSED = 2
    INTERRUPTED = 130
    TERMINATED = 143


EXIT_MEANINGS = {
    Exit.OK: "done: the command did all its work (a live graph also when stopped by --for; a job told "
             "on_error: skip, with a last warning line naming the frames and seconds it skipped)",
    Exit.FAILED: "the work started and did not finish (a node failed, restarts ran out, a loss the runtime "
                 "could not repair, an input that ended early or has undecodable data, an offline job "
                 "stopped by --for); a failed job removes its partial outputs",
    Exit.REFUSED: "refused before any work: bad command line or bad input (missing file, invalid graph, "
                  "wrong kind of checkpoint, unknown model name, an output that is an input, exists (without "
                  "--overwrite) or cannot be written); the message says which",
    Exit.INTERRUPTED: "interrupted (Ctrl-C); a lossless job leaves no output that looks complete",
    Exit.TERMINATED: "stopped by SIGTERM before its end; likewise no output that looks complete",
}


def exit_table() -> str:
    """The exit codes as the `--help` epilog shows them."""
    return "exit codes:\n" + "\n".join(f"  {int(code):<4} {text}" for code, text in EXIT_MEANINGS.items())


class Refused(Exception):
    """The command refuses its input; the message names the file or option and what is wrong."""


@contextlib.contextmanager
def refusing(*errors: type[BaseException]) -> Iterator[None]:
    """Turn the library's input errors (e.g. FileNotFoundError, ValueError) into `Refused`, message kept."""
    try:
        yield
    except errors as exc:
        raise Refused(str(exc)) from exc


def refuse_overwrite(inputs: list[str], output: str) -> None:
    """Refused where writing `output` would destroy one of `inputs` (same file, through any link)."""
    from stream.preflight import overwrite_problem

    if problem := overwrite_problem(inputs, output):
        raise Refused(problem)


def device_option(spec: str) -> str:
    """A --device value checked against this machine (auto: the GPU where there is one)."""
    from stream.devices import resolve_device
    from stream.node import NodeError

    with refusing(NodeError, ValueError):
        return resolve_device(spec)


def set_threads(n: int | None) -> None:
    """--threads: torch's CPU threads (0 or None: torch's default)."""
    if n:
        import torch

        torch.set_num_threads(n)


def duration(seconds: float) -> str:
    """Training time as people read it: seconds up to a minute and a half, then minutes."""
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
