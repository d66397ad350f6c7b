"""The benchmarks: each module here is one, ``bench/NAME.py`` with ``main(argv: list[str]) -> int``,
run as ``python -m launch bench NAME [ARGS]``; each prints its figures as ratios against a
baseline measured in the same process. Models that exist only to be compared against live in
``bench.baselines``, not in ``avatars``.
"""
