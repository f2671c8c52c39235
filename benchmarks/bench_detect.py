"""Prints the detection and framing tables; the same as `ferkit benchmark detect` (see `ferkit benchmark --help` for options).

    python benchmarks/bench_detect.py [options]
"""

import sys

from ferkit.cli import app

if __name__ == "__main__":
    app(["benchmark", "detect", *sys.argv[1:]])
