"""Test and debug node kinds (synthetic sources, checkers, delays): one file per kind, as in ``stream.nodes``."""
