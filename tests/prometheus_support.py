"""Shared by the tests that run Debian's Prometheus: start it on 127.0.0.1 scraping given targets, and wait."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests


def wait_until(check: Callable[[], Any], timeout: float, message: str) -> Any:
    """``check()``'s first truthy value, polled every 0.5 s; the test fails with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (requests.RequestException, KeyError, ValueError):
            pass
        time.sleep(0.5)
    pytest.fail(message)


def query(url: str, promql: str) -> list:
    return requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()["data"]["result"]


@contextlib.contextmanager
def prometheus(work: Path, targets: dict[str, int], timeout: float = 120.0) -> Iterator[str]:
    """Prometheus scraping ``{job: port}`` every second; yields its URL once every target is up."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (scripts/install-prometheus.sh)")
    jobs = "".join(f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
                   for job, port in targets.items())
    (work / "prometheus.yml").write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                                         "scrape_configs:\n" + jobs)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: len(query(url, "up == 1")) == len(targets), timeout,
                   f"prometheus never scraped {', '.join(targets)}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
