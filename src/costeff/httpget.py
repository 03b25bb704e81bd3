"""Every HTTP GET costeff makes (Prometheus, OpenCost): a total deadline and a cap on the decoded body.

``requests``' ``timeout`` bounds each socket read, not the call: a server that
trickles one byte every few seconds keeps a call alive for as long as it likes,
and a small gzip body can decode to gigabytes. Here the whole call (connect,
headers, body) runs against one deadline, and the body is read in chunks, decoded,
and refused once it passes ``max_bytes`` (default ``MAX_BODY_BYTES``, 32 MiB).

API: ``get(url, params, deadline_s, what, max_bytes=MAX_BODY_BYTES) -> Answer``;
raises ``DependencyError`` when the server is unreachable, misses the deadline or
sends too much.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from typing import Any

from costeff.errors import DependencyError
from costeff.numbers import loads_finite

MAX_BODY_BYTES = 32 * 2**20
_CHUNK = 16 * 1024  # raw bytes per read: a deflate stream decodes to at most ~1000x this at once


@dataclass(frozen=True)
class Answer:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON, or has NaN or an infinity in it."""
        return loads_finite(self.content)


class _TooLarge(Exception):
    pass


def get(url: str, params: dict[str, Any] | None, deadline_s: float, what: str,
        max_bytes: int = MAX_BODY_BYTES) -> Answer:
    """GET ``url`` and read its whole body within ``deadline_s`` seconds; ``what`` names the server in errors."""
    state: dict[str, Any] = {"cancel": threading.Event()}
    worker = threading.Thread(target=_fetch, args=(url, params, deadline_s, max_bytes, state),
                              name="costeff-http", daemon=True)
    worker.start()
    worker.join(deadline_s)
    if worker.is_alive():
        state["cancel"].set()
        _abort(state.get("response"))
        raise DependencyError(f"{what} at {url} did not answer within the {deadline_s:g} s deadline "
                              f"(a total for the call, not per read)")
    error = state.get("error")
    if isinstance(error, _TooLarge):
        raise DependencyError(f"{what} at {url} sent more than {max_bytes:,} bytes (decoded); refused") from None
    if error is not None:
        raise DependencyError(f"{what} at {url} is unreachable: {type(error).__name__}: {error}") from None
    return state["answer"]


def _fetch(url: str, params: dict[str, Any] | None, deadline_s: float, max_bytes: int,
           state: dict[str, Any]) -> None:
    import requests

    try:
        with requests.get(url, params=params, timeout=deadline_s, stream=True) as resp:
            state["response"] = resp
            length = resp.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes and "Content-Encoding" not in resp.headers:
                raise _TooLarge()
            state["answer"] = Answer(resp.status_code, _read(resp, max_bytes, state["cancel"]))
    except Exception as exc:  # noqa: BLE001 - handed to the caller's thread, which decides what it means
        state["error"] = exc


def _read(resp: Any, max_bytes: int, cancel: threading.Event) -> bytes:
    parts, size = [], 0
    for chunk in resp.iter_content(_CHUNK):
        if cancel.is_set():
            raise TimeoutError("deadline passed")
        size += len(chunk)
        if size > max_bytes:
            raise _TooLarge()
        parts.append(chunk)
    return b"".join(parts)


def _abort(resp: Any) -> None:
    """Shut the socket of a call past its deadline, so its thread ends instead of reading on."""
    conn = getattr(getattr(resp, "raw", None), "_connection", None) if resp is not None else None
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
