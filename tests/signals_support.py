"""Signals a test delivers to the code it runs."""

import signal


def signal_main_thread(signum: int) -> None:
    """Run the handler installed for ``signum`` now, as Python runs it on the main thread when the signal
    arrives, and fail when none is installed (the default would kill or interrupt the test process).

    A real ``os.kill`` of the test process itself killed it with SIGSEGV on a loaded machine, after earlier
    tests had loaded native runtimes, and left no traceback. Real signals to real daemon processes are
    covered by the subprocess tests (test_live_loop, test_reap_daemon, test_drift_watch_triton)."""
    handler = signal.getsignal(signum)
    assert callable(handler), f"no Python handler for {signal.Signals(signum).name}: {handler!r}"
    handler(signum, None)
