"""The metrics listener of every long-lived command: ``/metrics``, ``/healthz`` and ``/readyz``.

``/metrics`` is prometheus-client's own WSGI app (content negotiation, gzip,
OpenMetrics). The two probe paths answer from a ``Heartbeat`` the command's loop
beats after each round:

- ``/healthz`` (liveness): 200 while the loop is not stuck, that is while no round
  has been running, and no pause between rounds has lasted, longer than
  ``stale_after`` intervals. A failing round is still a live loop: restarting a
  reaper because Prometheus is down would not bring Prometheus back.
- ``/readyz`` (readiness): 200 once a round has succeeded, and only while the last
  success is no older than ``stale_after`` intervals. A watcher whose signals,
  ledger or models have been unusable for that long is up but not doing its job,
  and says so.

Both answer a small JSON body with the ages behind the verdict, 503 when not ok.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from costeff.errors import InputError

DEFAULT_STALE_AFTER = 3.0  # intervals


@dataclass
class Heartbeat:
    """When the loop last started and finished a round, and last succeeded (``clock()`` seconds)."""

    interval_s: float
    stale_after: float = DEFAULT_STALE_AFTER
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    round_started: float | None = field(default=None, init=False)
    last_round: float | None = field(default=None, init=False)
    last_success: float | None = field(default=None, init=False)
    rounds: int = field(default=0, init=False)
    failures_in_a_row: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise InputError(f"--interval: {self.interval_s}; expected seconds > 0")
        if not self.stale_after > 0:
            raise InputError(f"--stale-after: {self.stale_after}; expected a number of intervals > 0")
        self.started = self.clock()
        self._lock = threading.Lock()

    @property
    def limit_s(self) -> float:
        return self.stale_after * self.interval_s

    def begin(self) -> None:
        with self._lock:
            self.round_started = self.clock()

    def beat(self, ok: bool) -> None:
        """One round finished; ``ok`` when it did its job (signals read, file checked, decision made)."""
        with self._lock:
            now = self.clock()
            self.round_started, self.last_round = None, now
            self.rounds += 1
            if ok:
                self.last_success, self.failures_in_a_row = now, 0
            else:
                self.failures_in_a_row += 1

    def state(self) -> dict[str, Any]:
        with self._lock:
            now = self.clock()
            running = None if self.round_started is None else now - self.round_started
            idle = now - (self.last_round if self.last_round is not None else self.started)
            since_success = None if self.last_success is None else now - self.last_success
            live = (running if running is not None else idle) <= self.limit_s
            ready = since_success is not None and since_success <= self.limit_s
            return {"live": live, "ready": ready, "interval_s": self.interval_s, "stale_after_s": self.limit_s,
                    "round_running_s": _r(running), "since_last_round_s": _r(idle),
                    "since_last_success_s": _r(since_success), "rounds": self.rounds,
                    "failures_in_a_row": self.failures_in_a_row}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:  # probes every few seconds must not fill the log
        pass


def app(registry: Any, heartbeat: Heartbeat | None) -> Callable:
    """WSGI: the probe paths from ``heartbeat``, everything else prometheus-client's metrics app."""
    from prometheus_client import make_wsgi_app

    metrics = make_wsgi_app(registry)

    def route(environ: dict[str, Any], start_response: Callable) -> Any:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            state: dict[str, Any] = heartbeat.state() if heartbeat else {"live": True, "ready": True}
            ok = state["live"] if path == "/healthz" else state["ready"] and state["live"]
            state["status"] = "ok" if ok else _why(state)
            body = json.dumps(state).encode()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
            return [body]
        if path not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: /metrics, /healthz and /readyz are served here\n"]
        return metrics(environ, start_response)

    return route


def _why(state: dict[str, Any]) -> str:
    if not state["live"]:
        return "stuck"
    return "starting" if state["since_last_success_s"] is None else "stale"


def serve(registry: Any, port: int | None, addr: str = "127.0.0.1",
          heartbeat: Heartbeat | None = None) -> WSGIServer | None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``addr:port`` from a daemon thread; None without a port."""
    if port is None:
        return None
    family = _family(addr, port)
    server_class = type("HealthServer", (_Server,), {"address_family": family})
    try:
        server: WSGIServer = make_server(addr, port, app(registry, heartbeat), server_class,
                                         handler_class=_QuietHandler)
    except OSError as exc:
        raise InputError(f"--metrics-port {port} on {addr}: cannot listen ({exc.strerror or exc}); "
                         "expected a free port on an address of this host") from None
    threading.Thread(target=server.serve_forever, name="costeff-metrics", daemon=True).start()
    return server


def _family(addr: str, port: int) -> socket.AddressFamily:
    try:
        return socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise InputError(f"--metrics-addr {addr!r}: not an address of this host ({exc.strerror})") from None


def close(server: WSGIServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
