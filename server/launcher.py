"""Run a server in a child process on a free loopback port (tests, benchmarks, local tools).

    with LocalServer({"S2VC_DEV_MODE": "1"}, data_dir=tmp) as server:
        httpx.get(server.url + "/v2/health/ready")

Settings go in as ``S2VC_*`` environment variables; the child's output goes to ``log_path``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    def __init__(self, env: dict[str, str] | None = None, *, data_dir: str | Path, log_path: str | Path | None = None,
                 port: int | None = None, args: list[str] | None = None) -> None:
        self.env = {k: str(v) for k, v in (env or {}).items()}
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="s2vc-server-", suffix=".log")[1])
        self.port = port or free_port()
        self.args = args or []
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, ready_timeout: float = 120.0) -> "LocalServer":
        env = {**os.environ, "S2VC_DATA_DIR": str(self.data_dir), **self.env}
        cmd = [sys.executable, "-m", "s2vc_server", "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1])
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the server was not ready after {timeout:g} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run (what a crash or an OOM kill does)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait for a graceful shutdown (SIGKILL if it takes longer than ``timeout``)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
