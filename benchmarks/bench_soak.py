"""Prints the soak table: well-behaved clients beside slow and malicious ones; the same as
`ferkit benchmark soak` (duration: --seconds, default 30; the README's figures use --seconds 120 --clients 32).

    python benchmarks/bench_soak.py [options]
"""

import sys

from ferkit.cli import app

if __name__ == "__main__":
    app(["benchmark", "soak", *sys.argv[1:]])
