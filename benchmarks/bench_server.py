"""Prints the server speed table; the same as `ferkit benchmark server` (see `ferkit benchmark --help` for options).

    python benchmarks/bench_server.py [options]
"""

import sys

from ferkit.cli import app

if __name__ == "__main__":
    app(["benchmark", "server", *sys.argv[1:]])
