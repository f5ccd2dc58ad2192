"""``make bench``: run every benchmark module (or those named on the command line)."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench
from bench.common import BenchServer, Result, print_table


def main(argv: list[str]) -> int:
    names = argv or sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")
    )
    server = BenchServer()
    results: list[Result] = []
    try:
        for name in names:
            module = importlib.import_module(f"bench.{name}")
            print(f"running {name} ...", flush=True)
            results.extend(module.run(server))
    finally:
        server.close()
    print()
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
