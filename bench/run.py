"""`make bench`: run the benchmarks at a scale and render bench/results/latest.md."""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

from bench.common import render_latest

BENCHMARKS = ("ingestion", "features", "online", "retrieval", "training", "scoring", "drift")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="xs", choices=["xs", "s", "m"])
    parser.add_argument("--runs", type=int, default=1, help="repetitions of the reference measurements")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, default=list(BENCHMARKS))
    args = parser.parse_args()
    workdir = Path(os.environ.get("FS_HOME", ".fs_platform")).resolve() / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        module = importlib.import_module(f"bench.bench_{name}")
        path = module.run(args.scale, args.runs, workdir)
        print(f"{name}: {path}")
    print(render_latest())


if __name__ == "__main__":
    main()
