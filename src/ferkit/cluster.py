"""A Ray cluster of several nodes on this one machine, for the tests and `ferkit benchmark batch`:
each node is a `ray start --block` process with its own CPUs, a resource naming it, and its own
ports, all under one temporary folder; leaving the context stops those processes, and only them
(never `ray stop`, which would end every Ray on the machine)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .errors import ClusterError

READY = "Ray runtime started"  # what `ray start` prints once its node is up


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (held open together, so they differ)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def node_ports() -> list[str]:
    """`ray start` options giving a node its own ports, so two nodes (and other Rays) on one machine never collide."""
    names = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "runtime-env-agent-port", "metrics-export-port")
    options = [f"--{name}={port}" for name, port in zip(names, free_ports(len(names)))]
    return options + ["--min-worker-port=0", "--max-worker-port=0"]  # workers: any free port


@contextmanager
def local_cluster(nodes: int = 2, cpus: int = 1, timeout: float = 60.0) -> Iterator[str]:
    """Start a head and `nodes - 1` worker nodes here, each with `cpus` CPUs and a resource
    `node<i>` (so work can be pinned to a node); yields the head's address for `--address`."""
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    # No token: the worker's `ray start` does not pick the head's up, nor does a process that imported
    # Ray before the cluster started (the tests) join with one. Ray's nodes listen on every address
    # (whatever --node-ip-address says), so keep this to machines whose network is trusted: a test
    # or benchmark of a minute. Also no usage report, and no 30 s drain when stopped.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    started: list[subprocess.Popen] = []
    port = free_ports(1)[0]
    address = f"127.0.0.1:{port}"
    try:
        for i in range(nodes):
            first = ["--head", f"--port={port}", f"--temp-dir={folder}", "--include-dashboard=false"] if i == 0 else [f"--address={address}"]
            log = Path(folder) / f"node{i}.log"
            with log.open("w") as out:
                node = subprocess.Popen(["ray", "start", "--block", *first, f"--num-cpus={cpus}", f"--resources={{\"node{i}\": 1}}",
                                         "--node-ip-address=127.0.0.1", *node_ports()],
                                        stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            started.append(node)
            wait_ready(node, log, timeout)
        yield address
    finally:
        for node in started:  # all at once: each drains its own processes
            node.terminate()
        for node in started:
            stop(node)
        shutil.rmtree(folder, ignore_errors=True)


def wait_ready(node: subprocess.Popen, log: Path, timeout: float) -> None:
    """Wait until `ray start`'s output says its node is up; its last lines if it fails instead."""
    deadline = time.monotonic() + timeout
    while READY not in log.read_text():
        if node.poll() is not None or time.monotonic() > deadline:
            raise ClusterError("ray start failed:\n" + log.read_text())
        time.sleep(0.1)


def stop(node: subprocess.Popen) -> None:
    """Wait for a `ray start --block` told to stop (SIGTERM: it stops its node's processes, then
    itself); what is left after 30 s is ended through its process group."""
    try:
        node.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()
