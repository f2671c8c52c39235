"""Prints the models speed table; the same as `ferkit benchmark models` (see `ferkit benchmark --help` for options).

    python benchmarks/bench_models.py [options]
"""

import sys

from ferkit.cli import app

if __name__ == "__main__":
    app(["benchmark", "models", *sys.argv[1:]])
