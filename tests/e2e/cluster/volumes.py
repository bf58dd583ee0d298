"""Pod volumes for the process kubelet: directories on the host.

A pod's volumes become directories: a PersistentVolumeClaim maps to the
directory of the PersistentVolume the kubelet provisioned for it (kept until
the claim is deleted, so a pod of the same name finds its data again);
emptyDir, configMap, secret, downwardAPI and projected volumes (the service
account token included) are written under the pod's own directory. A
container sees them through its mount paths rewritten in its command line,
its environment and its working directory (``PathMap``): there is no mount
namespace, so a path the program builds itself is not rewritten.

Imports nothing of kredis.
"""

from __future__ import annotations

import base64
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PV_ANNOTATION = "e2e.kredis.io/provisioned-by"
PV_PREFIX = "e2e-pv-"


class VolumeNotReadyError(RuntimeError):
    """A volume's source (claim, ConfigMap, Secret) is not there yet."""


@dataclass
class PathMap:
    """Mount path -> host directory, applied to argv, env and workingDir."""

    mounts: dict[str, str] = field(default_factory=dict)

    def add(self, mount_path: str, host_path: str) -> None:
        self.mounts[mount_path.rstrip("/") or "/"] = host_path

    def rewrite(self, value: str) -> str:
        """``value`` with a leading mount path (or ``opt=mount path``) mapped."""
        if "=" in value and not value.startswith("/"):
            key, _, rest = value.partition("=")
            return f"{key}={self._path(rest)}"
        return self._path(value)

    def _path(self, value: str) -> str:
        for mount in sorted(self.mounts, key=len, reverse=True):
            if value == mount or value.startswith(mount + "/"):
                return self.mounts[mount] + value[len(mount) :]
        return value


def _write_items(
    directory: Path, data: dict[str, bytes], items: list[dict[str, Any]] | None
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    chosen = (
        {item["key"]: item.get("path", item["key"]) for item in items}
        if items
        else {key: key for key in data}
    )
    for key, relative in chosen.items():
        if key not in data:
            continue
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[key])
        target.chmod(0o600)


class Volumes:
    """Reads volume sources from the API and lays them out for one pod."""

    def __init__(self, core: Any, root: Path) -> None:
        self.core = core
        self.root = root

    def _get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        read = {
            "configmap": self.core.read_namespaced_config_map,
            "secret": self.core.read_namespaced_secret,
            "pvc": self.core.read_namespaced_persistent_volume_claim,
            "serviceaccount": self.core.read_namespaced_service_account,
        }[kind]
        try:
            response = read(name, namespace, _preload_content=False)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        result: dict[str, Any] = json.loads(response.data)
        return result

    def config_data(
        self, kind: str, namespace: str, name: str, optional: bool
    ) -> dict[str, bytes]:
        """The keys of a ConfigMap or Secret as bytes ({} if optional and gone)."""
        found = self._get(kind, namespace, name)
        if found is None:
            if optional:
                return {}
            raise VolumeNotReadyError(f"{kind} {namespace}/{name} not found")
        if kind == "secret":
            return {
                k: base64.b64decode(v) for k, v in (found.get("data") or {}).items()
            }
        data = {k: v.encode() for k, v in (found.get("data") or {}).items()}
        for k, v in (found.get("binaryData") or {}).items():
            data[k] = base64.b64decode(v)
        return data

    def claim_directory(self, namespace: str, claim: str) -> str:
        """The host directory of a bound claim's volume."""
        pvc = self._get("pvc", namespace, claim)
        if pvc is None:
            raise VolumeNotReadyError(f"claim {namespace}/{claim} not found")
        volume = (pvc.get("spec") or {}).get("volumeName")
        if not volume or (pvc.get("status") or {}).get("phase") != "Bound":
            raise VolumeNotReadyError(f"claim {namespace}/{claim} is not bound yet")
        directory = self.root / "volumes" / volume
        directory.mkdir(parents=True, exist_ok=True)
        return str(directory)

    def prepare(self, pod: dict[str, Any], pod_dir: Path, token: Any) -> dict[str, str]:
        """Volume name -> host directory for every volume of ``pod``."""
        namespace = pod["metadata"]["namespace"]
        result: dict[str, str] = {}
        for volume in pod["spec"].get("volumes") or []:
            name = volume["name"]
            local = pod_dir / "volumes" / name
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                result[name] = self.claim_directory(namespace, claim)
                continue
            if "emptyDir" in volume:
                local.mkdir(parents=True, exist_ok=True)
            elif "configMap" in volume or "secret" in volume:
                kind = "configmap" if "configMap" in volume else "secret"
                source = volume.get("configMap") or volume.get("secret") or {}
                source_name = source.get("name") or source.get("secretName", "")
                data = self.config_data(
                    kind, namespace, source_name, bool(source.get("optional"))
                )
                _write_items(local, data, source.get("items"))
            elif "downwardAPI" in volume:
                self._downward(pod, local, volume["downwardAPI"].get("items") or [])
            elif "projected" in volume:
                self._projected(pod, local, volume["projected"], token)
            else:
                kinds = sorted(set(volume) - {"name"})
                raise VolumeNotReadyError(f"volume {name}: {kinds} is not supported")
            result[name] = str(local)
        return result

    def _downward(
        self, pod: dict[str, Any], directory: Path, items: list[dict[str, Any]]
    ) -> None:
        data = {
            item["path"]: field_value(pod, item["fieldRef"]["fieldPath"]).encode()
            for item in items
            if "fieldRef" in item
        }
        _write_items(directory, data, None)

    def _projected(
        self, pod: dict[str, Any], directory: Path, spec: dict[str, Any], token: Any
    ) -> None:
        namespace = pod["metadata"]["namespace"]
        for source in spec.get("sources") or []:
            if "serviceAccountToken" in source:
                wanted = source["serviceAccountToken"]
                _write_items(
                    directory,
                    {wanted["path"]: token(pod, wanted).encode()},
                    None,
                )
            elif "configMap" in source or "secret" in source:
                kind = "configmap" if "configMap" in source else "secret"
                inner = source.get("configMap") or source.get("secret") or {}
                data = self.config_data(
                    kind, namespace, inner["name"], bool(inner.get("optional"))
                )
                _write_items(directory, data, inner.get("items"))
            elif "downwardAPI" in source:
                self._downward(pod, directory, source["downwardAPI"].get("items") or [])

    def release_pod(self, pod_dir: Path) -> None:
        """Remove the pod's own volumes (claims' volumes stay)."""
        shutil.rmtree(pod_dir / "volumes", ignore_errors=True)


def field_value(pod: dict[str, Any], path: str) -> str:
    """A downward-API field of the pod (``metadata.labels['x']`` included)."""
    metadata, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
    }
    if path in simple:
        return str(simple[path])
    for prefix, mapping in (
        ("metadata.labels", metadata.get("labels") or {}),
        ("metadata.annotations", metadata.get("annotations") or {}),
    ):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str(mapping.get(path[len(prefix) + 2 : -2], ""))
        if path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted(mapping.items()))
    raise VolumeNotReadyError(f"downward-API field {path} is not supported")
