"""The server's Prometheus metrics (prometheus_client), counted by mailsrv.core.events as it logs.

Every metric has labels, so its values are made at their first use rather than at import: by then
`mailsrv serve` has chosen the multiprocess mode (`use_directory`), in which each worker process
writes its values into files of one directory and a scrape sums them, so the answer is exact
whichever worker gives it. Figures the store holds (spool depth and age) are read at the scrape.
"""
from __future__ import annotations

import functools
import os
import shutil
import socket
from typing import Any
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "scrape", "use_directory", "process_ended", "soap_call", "child"]

RECEIVED = Counter("mailsrv_messages_received_total",
                   "Messages accepted, by how: delivered into the mailboxes at acceptance or spooled",
                   ["path"])
RECEIVED_BYTES = Counter("mailsrv_received_bytes_total", "Bytes of the messages accepted", ["path"])
DELIVERIES = Counter("mailsrv_deliveries_total", "Delivery attempts per recipient, by kind and outcome",
                     ["kind", "outcome"])
DELIVERED_BYTES = Counter("mailsrv_delivered_bytes_total", "Bytes delivered (message size per recipient)",
                          ["kind"])
SESSIONS = Counter("mailsrv_sessions_total", "Client sessions opened, by protocol", ["protocol"])
SESSIONS_OPEN = Gauge("mailsrv_sessions_open", "Client sessions open now, by protocol", ["protocol"],
                      multiprocess_mode="livesum")
AUTH_FAILURES = Counter("mailsrv_auth_failures_total", "Failed logins, by protocol", ["protocol"])
BLOCKED = Counter("mailsrv_blocked_total",
                  "Clients refused before a login was tried: on a blacklist, or locked out after failures",
                  ["protocol", "reason"])
SOAP_CALLS = Counter("mailsrv_soap_calls_total", "SOAP calls, by service, operation and result code",
                     ["service", "operation", "code"])
SOAP_SECONDS = Histogram("mailsrv_soap_call_seconds", "SOAP call latency, login included", ["service", "operation"],
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

_ENV = "PROMETHEUS_MULTIPROC_DIR"


@functools.cache
def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, remembered: labels() takes a lock and rebuilds its key on every
    call (~4 % of a quick SOAP call's CPU); each metric has only a few label sets."""
    return metric.labels(*labels)


def soap_call(service: str, operation: str, code: int, seconds: float) -> None:
    """Count a SOAP call that answered `code` (0 done, -1 a server fault) after `seconds`."""
    child(SOAP_CALLS, service, operation, str(code)).inc()
    child(SOAP_SECONDS, service, operation).observe(seconds)


def use_directory(root: Path) -> None:
    """Multiprocess mode with its files in a directory of this `mailsrv serve` under `root`, made
    empty (a previous run's counts are not this run's). Several servers may share a data directory
    (nodes on one machine, or on shared storage): each has its own, and the directories of ended
    ones on this host are removed. Called once by `mailsrv serve` before any metric value is made
    or worker forked."""
    host = socket.gethostname()
    root.mkdir(parents=True, mode=0o700, exist_ok=True)
    for old in root.glob(f"{host}.*"):
        pid = old.name.rsplit(".", 1)[1]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    directory = root / f"{host}.{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)
    os.environ[_ENV] = str(directory)
    values.ValueClass = values.MultiProcessValue(_process_id)


# This process's id for the multiprocess values, which ask at every increment whether a fork
# happened (three system calls a SOAP call with os.getpid); a forked worker learns its own at the fork.
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def _process_id() -> int:
    return _pid[0]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def process_ended(pid: int) -> None:
    """A worker ended: its open sessions no longer count (its counters do)."""
    if os.environ.get(_ENV):
        multiprocess.mark_process_dead(pid)


class _StoreFigures(Collector):
    """Figures read from the store at each scrape (a function returning (name, help, value))."""

    def __init__(self, read: Callable[[], list[tuple[str, str, float]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, documentation, value in self.read():
            yield GaugeMetricFamily(name, documentation, value=value)


def scrape(store_figures: Callable[[], list[tuple[str, str, float]]]) -> bytes:
    """The exposition text: this node's counters (every worker's, in multiprocess mode) and `store_figures`."""
    registry = CollectorRegistry()
    registry.register(_StoreFigures(store_figures))
    if os.environ.get(_ENV):
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY) + generate_latest(registry)
