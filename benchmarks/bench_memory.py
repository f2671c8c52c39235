"""Prints the peak memory table; the same as `ferkit benchmark memory` (see `ferkit benchmark --help` for options).

    python benchmarks/bench_memory.py [options]
"""

import sys

from ferkit.cli import app

if __name__ == "__main__":
    app(["benchmark", "memory", *sys.argv[1:]])
