"""A platform for the operator loop whose pods are RedisHarness servers.

Stands in for Kubernetes in integration tests of the loop: the pods are real
redis-server processes on loopback addresses, the StatefulSet is the list of
started servers, status is kept in memory. Migration Jobs run in-process
through a function the test supplies. Only for tests.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from tests.support.real_cluster import RedisHarness, RedisServer


class HarnessPlatform:
    """StatefulSet semantics over harness servers: ordinals, highest go first."""

    def __init__(
        self,
        harness: RedisHarness,
        *,
        group: str,
        spec: dict[str, Any],
        node_timeout_ms: int,
        name: str = "demo",
        run_job: Callable[[Sequence[str]], bool] | None = None,
    ) -> None:
        self.harness = harness
        self.group = group
        self.spec = dict(spec)
        self.name = name
        self.generation = 1
        self.node_timeout_ms = node_timeout_ms
        self.status: dict[str, Any] = {}
        self.servers: dict[int, RedisServer] = {}
        self.replicas: int | None = None
        self.run_job = run_job
        self.job_results: dict[str, bool] = {}
        self.job_args: dict[str, list[str]] = {}

    def set_spec(self, **changes: Any) -> None:
        """Edit the spec, as kubectl apply would, bumping the generation."""
        self.spec.update(changes)
        self.generation += 1

    def server(self, ordinal: int) -> RedisServer:
        """The server playing pod ``<name>-<ordinal>``."""
        return self.servers[ordinal]

    def resource(self) -> dict[str, Any]:
        return {
            "apiVersion": "kredis.io/v1alpha1",
            "kind": "Kredis",
            "metadata": {
                "name": self.name,
                "namespace": "default",
                "generation": self.generation,
                "uid": "harness",
            },
            "spec": dict(self.spec),
            "status": copy.deepcopy(self.status),
        }

    def pods(self) -> list[dict[str, Any]]:
        return [
            {
                "name": server.pod,
                "ip": server.ip,
                "phase": "Running" if server.alive else "Failed",
                "ready": server.alive,
                "terminating": False,
                "nodeName": f"worker-{ordinal % 3}",
                "zone": f"zone-{'abc'[ordinal % 3]}",
            }
            for ordinal, server in sorted(self.servers.items())
        ]

    def stateful_set(self) -> dict[str, Any] | None:
        if self.replicas is None:
            return None
        ready = sum(1 for s in self.servers.values() if s.alive)
        return {"replicas": self.replicas, "readyReplicas": ready}

    def jobs(self) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "labels": {},
                "annotations": {},
                "active": 0,
                "succeeded": int(ok),
                "failed": int(not ok),
                "conditions": [
                    {"type": "Complete" if ok else "Failed", "status": "True"}
                ],
            }
            for name, ok in sorted(self.job_results.items())
        ]

    def scale(self, replicas: int) -> None:
        self.replicas = replicas
        for ordinal in range(replicas):
            if ordinal not in self.servers:
                self.servers[ordinal] = self.harness.start(
                    f"{self.name}-{ordinal}",
                    group=self.group,
                    node_timeout_ms=self.node_timeout_ms,
                )
        for ordinal in sorted(self.servers, reverse=True):
            if ordinal >= replicas:
                self.servers.pop(ordinal).kill()

    def start_job(self, *, name: str, args: Sequence[str]) -> None:
        if self.run_job is None:
            raise AssertionError(f"no migration expected, got Job {name}: {args}")
        self.job_args[name] = list(args)
        self.job_results[name] = self.run_job(args)

    def delete_job(self, name: str) -> None:
        self.job_results.pop(name, None)

    def write_status(self, status: dict[str, Any]) -> None:
        self.status = copy.deepcopy(status)
