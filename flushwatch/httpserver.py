"""The operations endpoint of every role: ``/metrics``, ``/healthz`` and ``/readyz``.

It runs in a daemon thread with its own tiny HTTP server, so a scrape never waits on the event loop and a
stuck loop is still visible (``/healthz`` answers while ``/readyz`` reports what is not ready).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from flushwatch.errors import ConfigError

__all__ = ["OpsServer"]

log = logging.getLogger("flushwatch.ops")


class OpsServer:
    """Serves metrics and health on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int,
                 readiness: Callable[[], list[str]] | None = None) -> None:
        self._registry = registry
        self._readiness = readiness or (lambda: [])
        handler = self._handler()
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror}; set metrics.port to a free port "
                "(or 0 for any) or metrics.enabled = false") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops-http", daemon=True)

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    def start(self) -> OpsServer:
        """Start serving in the background."""
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics (also /healthz, /readyz)",
                 self._server.server_address[0], self.port)
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(outer._registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, b"ok\n", "text/plain")
                elif path == "/readyz":
                    waiting = outer._readiness()
                    body = ("ready\n" if not waiting else "not ready: " + "; ".join(waiting) + "\n").encode()
                    self._send(503 if waiting else 200, body, "text/plain")
                else:
                    self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler
