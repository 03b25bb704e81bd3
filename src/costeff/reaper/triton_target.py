"""A model on a Triton server as a reaper target: unloaded through the model-repository API, loaded on restore.

``kind = "triton"`` with ``url`` (the server's HTTP HOST:PORT) and ``model``. Reaping is
``POST /v2/repository/models/NAME/unload``; restoring is ``POST .../load``, which loads the
versions the repository's ``config.pbtxt`` names now (a rollback made while the model was
unloaded is what comes back). The server must run with ``--model-control-mode=explicit``
(``costeff triton serve`` does); a server in poll mode refuses both calls.

Fail closed: before unloading, the repository index is read. A server that does not answer,
or a model it does not know, is left alone and the outcome says why (``failed: true``);
an unload Triton refuses is one failed outcome and is not tried again for ``retry_after_s``
(no retry storm from a daemon ticking every minute). A load that fails raises: the reap stays
open in the audit trail and the next ``reap restore`` tries again.

Plain HTTP (``requests``), no Triton client library: nothing here needs Triton's numpy pins.
No Kubernetes permission is involved (``costeff reap rbac`` has no rule for these targets).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from costeff.errors import DependencyError
from costeff.reaper.actions import Outcome
from costeff.reaper.config import Target

READY = "READY"


class TritonModels:
    """Unload / load models through Triton's HTTP model-repository API."""

    def __init__(self, timeout_s: float = 10.0, settle_s: float = 30.0, retry_after_s: float = 1800.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s, self.settle_s, self.retry_after_s, self.clock = timeout_s, settle_s, retry_after_s, clock
        self.refused: dict[str, tuple[float, str]] = {}  # target key -> (when, why) of the last failed unload

    # ------------------------------------------------------------ reap

    def held_off(self, target: Target) -> str | None:
        """Why ``target`` is not tried again yet (a recent failed unload), or None."""
        last = self.refused.get(target.key)
        if last is None:
            return None
        waited = self.clock() - last[0]
        if waited >= self.retry_after_s:
            del self.refused[target.key]
            return None
        return f"not retried for {self.retry_after_s - waited:.0f} s more: {last[1]}"

    def reap(self, target: Target, dry_run: bool = False) -> Outcome:
        """Unload the model's loaded versions; with ``dry_run``, only read the index and say what would happen."""
        try:
            versions = self._index(target)
        except DependencyError as exc:
            return self._kept(target, str(exc), dry_run)
        if not versions:
            return self._kept(target, f"Triton at {target.url} does not know model {target.model!r} "
                                      f"(not in its repository index)", dry_run)
        ready = sorted(v for v, state in versions.items() if state == READY)
        before = {"loaded": bool(ready), "versions": ready, "states": versions}
        if not ready:
            return Outcome(target.key, "triton", "reap", False, before, {"loaded": False},
                           f"{target.model} is not loaded on {target.url} (not by the reaper)")
        if dry_run:
            return Outcome(target.key, "triton", "reap", True, before, {"loaded": False},
                           f"would unload {target.model} (version(s) {', '.join(ready)}) from {target.url}",
                           target.usd_per_hour)
        try:
            self._post(target, "unload")
        except DependencyError as exc:
            return self._kept(target, str(exc), dry_run)
        settled = self._wait(target, loaded=False)
        detail = f"unloaded {target.model} (version(s) {', '.join(ready)}) from {target.url}" if settled else \
            f"unload of {target.model} accepted by {target.url}; still unloading after {self.settle_s:g} s"
        return Outcome(target.key, "triton", "reap", True, before, {"loaded": False}, detail, target.usd_per_hour)

    def _kept(self, target: Target, why: str, dry_run: bool) -> Outcome:
        """Fail closed: the model stays as it is, and the record says why."""
        if not dry_run:
            self.refused[target.key] = (self.clock(), why)
        return Outcome(target.key, "triton", "reap", False, {"loaded": None}, {"loaded": None},
                       f"kept as it is: {why}", extra={"failed": True, "error": why})

    # ------------------------------------------------------------ restore

    def restore(self, target: Target, before: dict[str, Any], dry_run: bool = False) -> Outcome:
        """Load the model again (when it was loaded before the reap); raises when Triton does not."""
        if not before.get("loaded"):
            return Outcome(target.key, "triton", "restore", False, {"loaded": False}, {"loaded": False},
                           f"{target.model} was not loaded before the reap: nothing to load")
        versions = self._index(target)
        ready = sorted(v for v, state in versions.items() if state == READY)
        if ready:
            return Outcome(target.key, "triton", "restore", False, {"loaded": True}, {"loaded": True,
                           "versions": ready}, f"{target.model} already loaded on {target.url}")
        if dry_run:
            return Outcome(target.key, "triton", "restore", True, {"loaded": False}, {"loaded": True},
                           f"would load {target.model} on {target.url}")
        self._post(target, "load")
        if not self._wait(target, loaded=True):
            raise DependencyError(f"Triton at {target.url} accepted the load of {target.model!r} but it was not "
                                  f"ready within {self.settle_s:g} s; the reap stays open")
        ready = sorted(v for v, state in self._index(target).items() if state == READY)
        return Outcome(target.key, "triton", "restore", True, {"loaded": False}, {"loaded": True, "versions": ready},
                       f"loaded {target.model} (version(s) {', '.join(ready)}) on {target.url}")

    # ------------------------------------------------------------ HTTP

    def _index(self, target: Target) -> dict[str, str]:
        """``version -> state`` of ``target.model`` in the server's repository index (empty: unknown model)."""
        body = self._request(target, "/v2/repository/index", "read the repository index of")
        if not isinstance(body, list):
            raise DependencyError(f"Triton at {target.url}: the repository index is not a list")
        return {str(e.get("version", "")): str(e.get("state", "")) for e in body
                if isinstance(e, dict) and e.get("name") == target.model and e.get("version")}

    def _post(self, target: Target, verb: str) -> None:
        self._request(target, f"/v2/repository/models/{target.model}/{verb}", f"{verb} {target.model!r} on")

    def _request(self, target: Target, path: str, what: str) -> Any:
        import requests

        try:
            resp = requests.post(f"http://{target.url}{path}", json={}, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise DependencyError(f"Triton at {target.url} is unreachable ({type(exc).__name__}); "
                                  f"could not {what} it") from None
        if resp.status_code != 200:
            raise DependencyError(f"Triton at {target.url} refused to {what} it: HTTP {resp.status_code}: "
                                  f"{_error(resp)}")
        try:
            return resp.json() if resp.content else None
        except ValueError:
            raise DependencyError(f"Triton at {target.url} answered {path} with a body that is not JSON") from None

    def _wait(self, target: Target, loaded: bool) -> bool:
        """Poll the model's readiness until it is ``loaded`` (unload and load finish asynchronously)."""
        import requests

        deadline = self.clock() + self.settle_s
        while True:
            try:
                ready = requests.get(f"http://{target.url}/v2/models/{target.model}/ready",
                                     timeout=self.timeout_s).status_code == 200
            except requests.RequestException:
                ready = False
            if ready == loaded and (loaded or self._unloaded(target)):
                return True
            if self.clock() >= deadline:
                return False
            time.sleep(0.2)

    def _unloaded(self, target: Target) -> bool:
        try:
            return all(state != READY and state != "UNLOADING" for state in self._index(target).values())
        except DependencyError:
            return False


def _error(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        body = None
    text = body.get("error") if isinstance(body, dict) else resp.text
    return " ".join(str(text or "").split())[:200] or "(no reason given)"
