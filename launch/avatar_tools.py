"""Avatar commands of the command line (prepare-avatar, train-avatar, eval-avatar): thin wrappers over `avatars`."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the command line."""
