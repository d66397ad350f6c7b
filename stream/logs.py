"""How the runtime's diagnostics read, in the launcher and in every node process alike.

``message`` for information, ``warning: message`` / ``error: message`` for the rest; in a node
process each line starts with ``[node]`` (the record's ``node``, else the process's label), so
the lines of several processes interleaved on one terminal say who wrote them. A node process
logs at the level the launcher was given (``--log-level``), passed in its ProcessConfig.
"""
from __future__ import annotations

import logging
import sys


class Diagnostics(logging.Formatter):
    def __init__(self, label: str = ""):
        super().__init__()
        self.label = label

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno != logging.INFO:
            text = f"{record.levelname.lower()}: {text}"
        who = getattr(record, "node", None) or self.label
        return f"[{who}] {text}" if who else text


# Library loggers whose warnings say nothing to a user of this project: torch.compile on a CPU-only
# machine that has a CUDA_HOME warns "No CUDA runtime is found" in every compiling process.
QUIETED = ("torch.utils.cpp_extension",)


def configure_logging(level: str | int, label: str = "") -> None:
    """Diagnostics to stderr through `logging` (stdout carries only a command's results); Python
    warnings too, so a library's warning shows once, in the same form."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Diagnostics(label))
    logging.basicConfig(level=level.upper() if isinstance(level, str) else level, handlers=[handler], force=True)
    logging.captureWarnings(True)
    for name in QUIETED:
        logging.getLogger(name).setLevel(logging.ERROR)

