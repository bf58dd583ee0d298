"""Pod networking for the process kubelet: one network namespace per pod.

A Linux bridge on the host holds the subnet's first address; every pod gets a
network namespace of its own, joined to the bridge by a veth pair, with the
next free address of the subnet and a default route through the bridge. Pods
reach each other over the bridge and the host reaches every pod, while no pod
address exists outside the namespaces this module created. Every name it
creates carries the subnet in hex, so ``clean_up`` removes exactly what an
earlier run on the same subnet left behind.

Needs root (``ip netns``, ``ip link``). Imports nothing of kredis.
"""

from __future__ import annotations

import ipaddress
import subprocess
import threading
from dataclasses import dataclass


class NetworkError(RuntimeError):
    """An ``ip`` command failed, or the subnet has no free address left."""


def _ip(*args: str, check: bool = True) -> str:
    result = subprocess.run(
        ["ip", *args], capture_output=True, text=True, check=False, timeout=30
    )
    if check and result.returncode != 0:
        raise NetworkError(
            f"`ip {' '.join(args)}` failed ({result.returncode}): "
            f"{result.stderr.strip()}"
        )
    return result.stdout


@dataclass(frozen=True)
class Sandbox:
    """One pod's network: its namespace and its address."""

    namespace: str
    address: str


class PodNetwork:
    """The bridge and the pods' namespaces of one subnet."""

    def __init__(self, subnet: str) -> None:
        network = ipaddress.ip_network(subnet)
        if not isinstance(network, ipaddress.IPv4Network) or network.prefixlen > 29:
            raise NetworkError(
                f"subnet {subnet} must be IPv4 with a prefix of /29 or more"
            )
        self.network = network
        hosts = list(network.hosts())
        self.gateway = str(hosts[0])
        self._free = [str(h) for h in hosts[1:]]
        self._tag = f"{int(network.network_address):08x}"
        self.bridge = f"kb{self._tag}"
        self._lock = threading.Lock()

    def _namespace(self, address: str) -> str:
        return f"kn{self._tag}-{self._index(address)}"

    def _veth(self, address: str) -> str:
        return f"kv{self._tag}{self._index(address)}"

    def _index(self, address: str) -> str:
        offset = int(ipaddress.ip_address(address)) - int(self.network.network_address)
        return f"{offset:04x}"

    def clean_up(self) -> None:
        """Remove every namespace and the bridge this subnet's runs created."""
        prefix = f"kn{self._tag}-"
        for line in _ip("netns", "list", check=False).splitlines():
            name = line.split(" ", 1)[0]
            if name.startswith(prefix):
                _ip("netns", "delete", name, check=False)
        for line in _ip("-o", "link", "show", check=False).splitlines():
            parts = line.split(":")
            if len(parts) > 1:
                name = parts[1].strip().split("@", 1)[0]
                if name.startswith(f"kv{self._tag}"):
                    _ip("link", "delete", name, check=False)
        _ip("link", "delete", self.bridge, check=False)

    def set_up(self) -> None:
        """Create the bridge with the gateway address (after a clean-up)."""
        self.clean_up()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip(
            "addr",
            "add",
            f"{self.gateway}/{self.network.prefixlen}",
            "dev",
            self.bridge,
        )
        _ip("link", "set", self.bridge, "up")

    def create(self) -> Sandbox:
        """A new namespace with the next free address, reachable from the host."""
        with self._lock:
            if not self._free:
                raise NetworkError(f"no free pod address left in {self.network}")
            address = self._free.pop(0)
        namespace, veth = self._namespace(address), self._veth(address)
        try:
            _ip("netns", "add", namespace)
            _ip("link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
            _ip("link", "set", f"{veth}p", "netns", namespace)
            _ip("link", "set", veth, "master", self.bridge)
            _ip("link", "set", veth, "up")
            inside = ("netns", "exec", namespace, "ip")
            _ip(*inside, "link", "set", f"{veth}p", "name", "eth0")
            _ip(
                *inside,
                "addr",
                "add",
                f"{address}/{self.network.prefixlen}",
                "dev",
                "eth0",
            )
            _ip(*inside, "link", "set", "eth0", "up")
            _ip(*inside, "link", "set", "lo", "up")
            _ip(*inside, "route", "add", "default", "via", self.gateway)
        except NetworkError:
            self.release(Sandbox(namespace, address))
            raise
        return Sandbox(namespace=namespace, address=address)

    def release(self, sandbox: Sandbox) -> None:
        """Delete the namespace (its veth pair goes with it); free the address."""
        _ip("netns", "delete", sandbox.namespace, check=False)
        _ip("link", "delete", self._veth(sandbox.address), check=False)
        with self._lock:
            if sandbox.address not in self._free:
                self._free.append(sandbox.address)

    def tear_down(self) -> None:
        """Remove everything, bridge included."""
        self.clean_up()
