"""Reference models the benchmarks compare against (not shipped, not used by the runtime)."""
