"""Benchmark: planning time of converged snapshots of about 10, 100 and 1000 nodes.

Builds converged ``kredis.snapshot/v1`` documents in which every pod carries its
full CLUSTER NODES view (about a million lines at 1000 nodes), then measures:

- ``plan``: load_snapshot + plan in this process (median of a few runs);
- ``process``: ``kredis plan --snapshot FILE -o json`` as a whole new process;
- ``json``: ``json.load`` of the same file, the reference: the least any
  reader of the document must pay. The ratio process/json shows what planning
  adds on top of reading the input.

It prints a table and per-million-lines costs so linear growth is visible.
Run: ``.venv/bin/python bench/plan_scale.py [--sizes 10,100,1000]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kredis.domain.planner import plan
from kredis.domain.slots import allocate_ranges
from kredis.domain.snapshot import load_snapshot

SHAPES = {10: (5, 1), 100: (25, 3), 1000: (200, 4)}
PONG = 1_796_000_000_000


def _node_id(ordinal: int) -> str:
    return hashlib.sha1(f"bench-{ordinal}".encode()).hexdigest()


def build(masters: int, replicas: int) -> dict[str, Any]:
    """A converged cluster of masters*(1+replicas) pods with every view."""
    count = masters * (1 + replicas)
    ids = [_node_id(n) for n in range(count)]
    ips = [f"10.{n // 250}.{n % 250}.7" for n in range(count)]
    ranges = allocate_ranges(masters)
    lines = []
    for n in range(count):
        if n < masters:
            role, master, tail = "master", "-", f" {ranges[n]}"
        else:
            role, master, tail = "slave", ids[(n - masters) % masters], ""
        head = f"{ids[n]} {ips[n]}:6379@16379"
        lines.append((head, role, master, f"{n % masters + 1} connected{tail}"))
    redis = {}
    for viewer in range(count):
        # Every viewer saw its last pong from each peer at its own time.
        text = "\n".join(
            f"{head} {'myself,' if n == viewer else ''}{role} {master} 0 "
            f"{0 if n == viewer else PONG + (viewer * 7 + n) % 997} {rest}"
            for n, (head, role, master, rest) in enumerate(lines)
        )
        redis[f"big-{viewer}"] = {
            "reachable": True,
            "myId": ids[viewer],
            "clusterNodes": text + "\n",
            "clusterInfo": "cluster_state:ok\r\ncluster_slots_assigned:16384\r\n",
            "dbsize": 1000,
        }
    pods = [
        {
            "name": f"big-{n}",
            "ip": ips[n],
            "phase": "Running",
            "ready": True,
            "terminating": False,
            "nodeName": f"worker-{n % 7}",
            "zone": f"zone-{n % 3}",
        }
        for n in range(count)
    ]
    return {
        "format": "kredis.snapshot/v1",
        "observedAt": "2026-12-03T12:00:00Z",
        "kredis": {
            "apiVersion": "kredis.io/v1alpha1",
            "kind": "Kredis",
            "metadata": {"name": "big", "namespace": "bench", "generation": 1},
            "spec": {
                "masters": masters,
                "replicas": replicas,
                "basePort": 6379,
                "image": "redis:7.0",
                "maxMemory": "1gb",
            },
            "status": {"clusterFormed": True},
        },
        "statefulSet": {"replicas": count, "readyReplicas": count},
        "pods": pods,
        "redis": redis,
        "jobs": [],
    }


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def measure(size: int, *, repeat: int, directory: Path) -> dict[str, float]:
    """Time json.load, in-process planning and the whole CLI process."""
    masters, replicas = SHAPES.get(size, (max(1, size // 5), 4))
    path = directory / f"snapshot-{size}.json"
    path.write_text(json.dumps(build(masters, replicas)), encoding="utf-8")
    lines = (masters * (1 + replicas)) ** 2

    loads, plans, processes = [], [], []
    for _ in range(repeat):
        # The whole process first, while this one holds no big document.
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "kredis",
                "plan",
                "--snapshot",
                str(path),
                "-o",
                "json",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        processes.append(time.perf_counter() - start)

        start = time.perf_counter()
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
        loads.append(time.perf_counter() - start)

        start = time.perf_counter()
        result = plan(load_snapshot(data))
        plans.append(time.perf_counter() - start)
        assert not result.mutating, "a converged snapshot must plan no change"
        del data, result
    return {
        "nodes": masters * (1 + replicas),
        "lines": lines,
        "megabytes": path.stat().st_size / 1e6,
        "json": _median(loads),
        "plan": _median(plans),
        "process": _median(processes),
    }


def main() -> None:
    """Run the sizes given and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"{'nodes':>6} {'lines':>9} {'MB':>7} {'json s':>8} {'plan s':>8} "
        f"{'process s':>9} {'process/json':>12} {'plan us/line':>12}"
    )
    with tempfile.TemporaryDirectory(prefix="kredis-bench-") as tmp:
        for size in sizes:
            row = measure(size, repeat=args.repeat, directory=Path(tmp))
            print(
                f"{row['nodes']:>6.0f} {row['lines']:>9.0f} {row['megabytes']:>7.1f} "
                f"{row['json']:>8.3f} {row['plan']:>8.3f} {row['process']:>9.3f} "
                f"{row['process'] / row['json']:>12.2f} "
                f"{row['plan'] / row['lines'] * 1e6:>12.3f}"
            )


if __name__ == "__main__":
    main()
