"""Prints the FER2013 landmark template (classify.FER_LANDMARKS); the same as `ferkit benchmark landmarks` (see `ferkit benchmark --help` for options).

    python benchmarks/bench_landmarks.py [options]
"""

import sys

from ferkit.cli import app

if __name__ == "__main__":
    app(["benchmark", "landmarks", *sys.argv[1:]])
