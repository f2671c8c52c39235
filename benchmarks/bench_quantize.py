"""Prints the int8 quantization table; the same as `ferkit benchmark quantize` (see `ferkit benchmark --help` for options).

    python benchmarks/bench_quantize.py [options]
"""

import sys

from ferkit.cli import app

if __name__ == "__main__":
    app(["benchmark", "quantize", *sys.argv[1:]])
