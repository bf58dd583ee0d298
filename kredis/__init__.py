"""kredis: a Kubernetes operator for Redis Cluster.

The package is layered: ``kredis.domain`` (the pure planner), ``kredis.adapters``
(Kubernetes and Redis I/O) and ``kredis.app`` (the operator loop and the CLI).
Importing it starts nothing and connects to nothing.
"""

__version__ = "0.1.0"
