"""Prints the `ferkit batch` table: predict and video in one process, batch on Ray here with 1 and 2
workers, and on a local two-node cluster; the same as `ferkit benchmark batch` (see `ferkit
benchmark --help` for options).

    python benchmarks/bench_batch.py [options]
"""

import sys

from ferkit.cli import app

if __name__ == "__main__":
    app(["benchmark", "batch", *sys.argv[1:]])
