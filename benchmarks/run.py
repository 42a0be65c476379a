"""`python benchmarks/run.py [options]`: the same as `esdb bench`."""

from __future__ import annotations

from esdb.benchmarks.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
