"""Prints the pipeline speed table; the same as `ferkit benchmark pipeline` (see `ferkit benchmark --help` for options).

    python benchmarks/bench_pipeline.py [options]
"""

import sys

from ferkit.cli import app

if __name__ == "__main__":
    app(["benchmark", "pipeline", *sys.argv[1:]])
