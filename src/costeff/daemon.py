"""The loop every long-lived command runs: a round, a pause, again, until told to stop.

``reap --watch``, ``drift watch`` and ``ramp watch`` differ only in what a round does.
What they share lives here, once:

- the heartbeat (``costeff.health.Heartbeat``) is begun before and beaten after every
  round, so ``/healthz`` and ``/readyz`` mean the same thing for each daemon;
- SIGTERM and SIGINT only *ask* the loop to stop: the round in progress finishes (a
  rollback, a scale-down and its audit record are never cut in half) and no new round
  starts. The loop's handlers replace whatever was installed (the CLI's, which raises
  wherever the main thread is) for the loop's duration only, and the previous ones
  are put back afterwards;
- after a clean stop the exit code is 128 + the signal (143 for SIGTERM, 130 for
  SIGINT), as a shell reports a process ended by that signal.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger("costeff.daemon")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class LoopResult:
    rounds: int
    signal: int | None = None  # the signal that stopped the loop, if one did

    @property
    def exit_code(self) -> int:
        """128 + the signal after a clean stop on one; 0 when the loop ended by itself."""
        return 128 + self.signal if self.signal else 0


def run_rounds(round_fn: Callable[[], bool], interval_s: float, heartbeat: Any = None,
               stop: threading.Event | None = None, max_rounds: int | None = None) -> LoopResult:
    """Call ``round_fn`` every ``interval_s`` seconds until a stop signal, ``stop`` or ``max_rounds``.

    ``round_fn`` returns whether the round did its job (the heartbeat's readiness). An
    exception from it ends the loop (handlers restored) and is the caller's to report.
    """
    stop = stop or threading.Event()
    received: list[int] = []
    previous = _install(stop, received)
    rounds = 0
    try:
        while not stop.is_set() and (max_rounds is None or rounds < max_rounds):
            if heartbeat is not None:
                heartbeat.begin()
            ok = round_fn()
            if heartbeat is not None:
                heartbeat.beat(ok=bool(ok))
            rounds += 1
            if max_rounds is None or rounds < max_rounds:
                stop.wait(interval_s)
    finally:
        _restore(previous)
    return LoopResult(rounds, received[0] if received else None)


def _install(stop: threading.Event, received: list[int]) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread receives signals; its owner decides when to stop

    def handler(signum: int, _frame: Any) -> None:
        log.info("received %s: stopping after this round", signal.Signals(signum).name)
        received.append(signum)
        stop.set()

    return {s: signal.signal(s, handler) for s in STOP_SIGNALS}


def _restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        # None: the previous handler was not set from Python; the default is the closest to it
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)
