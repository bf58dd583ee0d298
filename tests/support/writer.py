"""A client that keeps writing to a Redis Cluster and remembers what was acked.

Runs in a thread with redis-py's cluster client (which follows MOVED and
ASK), writing a new key ``<prefix>:<n>`` with a known value each time. Every
write the cluster acknowledged is recorded; ``check`` reads them all back
and lists the ones that are missing or wrong. Writes that failed (during a
failover, say) are only counted: the client never learned their fate.
Only for tests, and only against loopback addresses.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Sequence

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

_BATCH = 200
# redis-py's cluster client raises RedisClusterException, which is not a
# RedisError, when its slot map is briefly inconsistent.
_CLIENT_ERRORS = (redis.RedisError, RedisClusterException)


class ClusterWriter:
    """Writes continuously until stopped; pause() for a quiet moment."""

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        *,
        password: str | None = None,
        prefix: str = "w",
    ) -> None:
        for host, _ in endpoints:
            if not host.startswith("127."):
                raise ValueError(f"refusing to write to a non-loopback host {host}")
        self._endpoints = list(endpoints)
        self._password = password
        self._prefix = prefix
        self.acked: list[int] = []
        self.failures = 0
        self.last_failure = ""
        self._next = 0
        self._running = threading.Event()
        self._idle = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def client(self) -> RedisCluster:
        """A fresh cluster client for the same endpoints."""
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in self._endpoints],
            password=self._password,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
        )

    def start(self) -> ClusterWriter:
        """Begin writing."""
        self._running.set()
        self._thread.start()
        return self

    def pause(self, timeout: float = 10.0) -> None:
        """Stop writing and wait until no write is in flight."""
        self._idle.clear()
        self._running.clear()
        if not self._idle.wait(timeout):
            raise AssertionError("the writer did not pause")

    def resume(self) -> None:
        """Write again."""
        self._running.set()

    def stop(self) -> None:
        """Stop the thread for good."""
        self._stop.set()
        self._running.set()
        self._thread.join(timeout=30)
        if self._error is not None:
            raise AssertionError(f"the writer crashed: {self._error!r}")

    def wait_for_acks(self, count: int, timeout: float = 60.0) -> None:
        """Block until at least ``count`` more writes were acknowledged."""
        goal = len(self.acked) + count
        deadline = time.monotonic() + timeout
        while len(self.acked) < goal:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {len(self.acked)} of {goal} writes acked in {timeout} s "
                    f"({self.failures} failed); the writer is at:\n{self._where()}"
                )
            time.sleep(0.02)

    def _where(self) -> str:
        # Where the writer thread is stuck, for the report.
        frame = sys._current_frames().get(self._thread.ident or 0)
        if frame is not None:
            return "".join(traceback.format_stack(frame))
        return f"stopped by {self._error!r}"

    def check(self) -> list[str]:
        """Keys acknowledged but now missing or wrong (empty when all is well)."""
        client = self.client()
        wrong: list[str] = []
        try:
            for start in range(0, len(self.acked), 500):
                chunk = self.acked[start : start + 500]
                pipe = client.pipeline()
                for n in chunk:
                    pipe.get(self._key(n))
                for n, value in zip(chunk, pipe.execute(), strict=True):
                    if value != self._value(n):
                        wrong.append(f"{self._key(n)}={value!r}")
        finally:
            client.close()
        return wrong

    def _run(self) -> None:
        client: RedisCluster | None = None
        try:
            while not self._stop.is_set():
                if not self._running.is_set():
                    self._idle.set()
                    self._running.wait()
                    continue
                if client is None:
                    try:
                        client = self.client()
                    except _CLIENT_ERRORS:
                        self.failures += 1
                        time.sleep(0.1)
                        continue
                client = self._write_some(client)
        except BaseException as err:  # reported by stop()
            self._error = err
        finally:
            self._idle.set()
            if client is not None:
                client.close()

    def _write_some(self, client: RedisCluster) -> RedisCluster | None:
        for _ in range(_BATCH):
            if not self._running.is_set():
                return client
            n = self._next
            self._next += 1
            try:
                client.set(self._key(n), self._value(n))
            except Exception as err:
                # redis-py's cluster client can also fail with AttributeError
                # while a node leaves its slot map; the write's fate is unknown
                # either way.
                self.last_failure = repr(err)
                # Unknown fate: counted, never checked. A new client
                # refreshes the slot map after a failover.
                self.failures += 1
                client.close()
                time.sleep(0.05)
                return None
            self.acked.append(n)
        return client

    def _key(self, n: int) -> str:
        return f"{self._prefix}:{n}"

    def _value(self, n: int) -> bytes:
        return f"value-{n}".encode()
