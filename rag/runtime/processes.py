"""Child-process helpers shared by the model-server launcher, the demo and the load tests."""

from __future__ import annotations

import socket
import subprocess
import sys


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Stop a child process: SIGTERM, then SIGKILL if it has not exited within ``timeout_s``.

    Args:
        proc: the child; nothing happens when it has already exited.
        timeout_s: seconds to wait after each signal.
    """
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux only; a no-op elsewhere).

    Meant as ``subprocess.Popen(preexec_fn=die_with_parent)``.
    """
    # A parent killed with SIGKILL cannot stop its child: ask the kernel to send SIGTERM instead,
    # so a crashed `rag serve` never leaves a model server eating the CPU. The signal fires when the
    # starting *thread* ends, so start() belongs on a long-lived thread (the CLI's and tests' main thread).
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
