"""Self-tests of the e2e harness: the real control plane and the process kubelet.

Each test proves one behaviour the operator's end-to-end tests rely on, by
asking the real kube-apiserver and controllers and, for pods, by talking to
the Redis processes the kubelet runs in its own network namespaces.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import kubernetes
import pytest
import redis
from kubernetes.client.rest import ApiException

from tests.e2e.conftest import POD_SUBNET, wait_for

pytestmark = pytest.mark.e2e

REDIS_IMAGE = "redis:7.4"
GROUP = "e2e.kredis.io"


def _redis(ip: str) -> redis.Redis:
    return redis.Redis(host=ip, port=6379, socket_timeout=5, socket_connect_timeout=5)


def _statefulset(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "redis",
                            "image": REDIS_IMAGE,
                            "command": [
                                "redis-server",
                                "--port",
                                "6379",
                                "--protected-mode",
                                "no",
                                "--dir",
                                "/data",
                                "--appendonly",
                                "yes",
                            ],
                            "ports": [{"name": "redis", "containerPort": 6379}],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            "readinessProbe": {
                                "exec": {"command": ["redis-cli", "ping"]},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "64Mi"}},
                    },
                }
            ],
        },
    }


def _ready_pods(core: Any, namespace: str, app: str, count: int) -> list[Any]:
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    ready = [
        p
        for p in pods
        if p.metadata.deletion_timestamp is None
        and p.status.pod_ip
        and any(
            c.type == "Ready" and c.status == "True" for c in p.status.conditions or []
        )
    ]
    return sorted(ready, key=lambda p: p.metadata.name) if len(ready) == count else []


def test_a_crd_schema_rejects_an_invalid_object_and_keeps_status_apart(
    api: kubernetes.client.ApiClient, namespace: str
) -> None:
    """The API server validates custom objects and serves status separately."""
    extensions = kubernetes.client.ApiextensionsV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    plural = f"widgets{namespace.replace('-', '')}"
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {"size": {"type": "integer", "minimum": 1}},
            },
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    extensions.create_custom_resource_definition(
        {
            "metadata": {"name": f"{plural}.{GROUP}"},
            "spec": {
                "group": GROUP,
                "scope": "Namespaced",
                "names": {"plural": plural, "singular": plural[:-1], "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": schema},
                        "subresources": {"status": {}},
                    }
                ],
            },
        }
    )

    def established() -> bool:
        crd = extensions.read_custom_resource_definition(f"{plural}.{GROUP}")
        return any(
            c.type == "Established" and c.status == "True"
            for c in crd.status.conditions or []
        )

    wait_for(established, what="the CRD to be established")
    args = (GROUP, "v1", namespace, plural)

    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(
            *args,
            {
                "apiVersion": f"{GROUP}/v1",
                "kind": "Widget",
                "metadata": {"name": "bad"},
                "spec": {"size": 0},
            },
        )
    created = custom.create_namespaced_custom_object(
        *args,
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": "good"},
            "spec": {"size": 2},
        },
    )
    created["status"] = {"phase": "Ready"}
    created["spec"]["size"] = 5
    patched = custom.replace_namespaced_custom_object_status(*args, "good", created)

    assert rejected.value.status == 422
    assert "spec.size" in rejected.value.body
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"]["size"] == 2
    assert patched["metadata"]["generation"] == created["metadata"]["generation"]


def test_a_stale_resource_version_is_refused_with_a_conflict(
    api: kubernetes.client.ApiClient, namespace: str
) -> None:
    """An update based on an old resourceVersion gets 409, not a lost update."""
    core = kubernetes.client.CoreV1Api(api)
    first = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "shared"}, "data": {"v": "1"}}
    )
    core.patch_namespaced_config_map("shared", namespace, {"data": {"v": "2"}})

    first.data = {"v": "stale"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("shared", namespace, first)

    assert conflict.value.status == 409
    assert core.read_namespaced_config_map("shared", namespace).data == {"v": "2"}


def test_a_statefulset_of_redis_pods_becomes_ready_on_distinct_addresses(
    api: kubernetes.client.ApiClient, kubelet: list[str], namespace: str
) -> None:
    """Three Redis pods become Ready, each at its own address, answering PING."""
    apps = kubernetes.client.AppsV1Api(api)
    core = kubernetes.client.CoreV1Api(api)
    apps.create_namespaced_stateful_set(namespace, _statefulset("redis", 3))

    pods = wait_for(
        lambda: _ready_pods(core, namespace, "redis", 3), what="3 ready Redis pods"
    )
    statefulset = wait_for(
        lambda: (
            (s := apps.read_namespaced_stateful_set("redis", namespace))
            and s.status.ready_replicas == 3
            and s
        ),
        what="the StatefulSet to count 3 ready replicas",
    )

    addresses = [p.status.pod_ip for p in pods]
    assert [p.metadata.name for p in pods] == ["redis-0", "redis-1", "redis-2"]
    assert len(set(addresses)) == 3
    subnet = ipaddress.ip_network(POD_SUBNET)
    assert all(ipaddress.ip_address(a) in subnet for a in addresses)
    assert {p.spec.node_name for p in pods} <= set(kubelet)
    assert all(_redis(a).ping() for a in addresses)
    assert statefulset.status.ready_replicas == 3


def test_a_deleted_pod_comes_back_as_a_new_process_with_its_volume(
    api: kubernetes.client.ApiClient, kubelet: list[str], namespace: str
) -> None:
    """The StatefulSet recreates a deleted pod; its PVC keeps the data."""
    del kubelet
    apps = kubernetes.client.AppsV1Api(api)
    core = kubernetes.client.CoreV1Api(api)
    apps.create_namespaced_stateful_set(namespace, _statefulset("keep", 2))
    pods = wait_for(lambda: _ready_pods(core, namespace, "keep", 2), what="2 pods")
    old = pods[1]
    before = _redis(old.status.pod_ip)
    before.set("survivor", "yes")
    run_id = before.info("server")["run_id"]

    core.delete_namespaced_pod(old.metadata.name, namespace)
    back = wait_for(
        lambda: [
            p
            for p in _ready_pods(core, namespace, "keep", 2)
            if p.metadata.name == old.metadata.name
            and p.metadata.uid != old.metadata.uid
        ],
        what=f"a new {old.metadata.name}",
    )[0]
    after = _redis(back.status.pod_ip)

    assert after.info("server")["run_id"] != run_id
    assert after.get("survivor") == b"yes"


def test_a_claims_volume_goes_when_the_claim_is_deleted(
    api: kubernetes.client.ApiClient, kubelet: list[str], namespace: str
) -> None:
    """The kubelet binds a claim to a volume and removes it with the claim."""
    del kubelet
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "scratch"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "16Mi"}},
            },
        },
    )
    bound = wait_for(
        lambda: (
            (c := core.read_namespaced_persistent_volume_claim("scratch", namespace))
            and c.status.phase == "Bound"
            and c
        ),
        what="the claim to be bound",
    )
    volume = bound.spec.volume_name

    core.delete_namespaced_persistent_volume_claim("scratch", namespace)

    def volume_gone() -> bool:
        names = {v.metadata.name for v in core.list_persistent_volume().items}
        return volume not in names

    assert wait_for(volume_gone, what=f"volume {volume} to go")


def _job(name: str, command: list[str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": REDIS_IMAGE, "command": command}
                    ],
                }
            },
        },
    }


def _job_condition(batch: Any, namespace: str, name: str) -> str:
    job = batch.read_namespaced_job(name, namespace)
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return str(condition.type)
    return ""


def test_jobs_run_to_complete_or_failed_by_their_exit_code(
    api: kubernetes.client.ApiClient, kubelet: list[str], namespace: str
) -> None:
    """A Job exiting 0 completes, one exiting 1 fails; kredis images run kredis."""
    del kubelet
    batch = kubernetes.client.BatchV1Api(api)
    batch.create_namespaced_job(namespace, _job("ok", ["redis-cli", "--version"]))
    batch.create_namespaced_job(namespace, _job("bad", ["sh", "-c", "exit 1"]))
    kredis_job = _job("kredis", [])
    container = kredis_job["spec"]["template"]["spec"]["containers"][0]
    container.update(image="kredis:dev", command=None, args=["plan", "--help"])
    batch.create_namespaced_job(namespace, kredis_job)

    ok = wait_for(lambda: _job_condition(batch, namespace, "ok"), what="Job ok")
    bad = wait_for(lambda: _job_condition(batch, namespace, "bad"), what="Job bad")
    entry = wait_for(
        lambda: _job_condition(batch, namespace, "kredis"), what="Job kredis"
    )

    assert ok == "Complete"
    assert bad == "Failed"
    assert entry == "Complete"
    assert batch.read_namespaced_job("ok", namespace).status.succeeded == 1


def test_deleting_an_owner_garbage_collects_its_dependents(
    api: kubernetes.client.ApiClient, namespace: str
) -> None:
    """A dependent whose owner is deleted is removed by the garbage collector."""
    core = kubernetes.client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "owner"}}
    )
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
    }
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "dependent", "ownerReferences": [reference]}}
    )

    core.delete_namespaced_config_map(
        "owner", namespace, propagation_policy="Background"
    )

    def dependent_gone() -> bool:
        names = {
            c.metadata.name for c in core.list_namespaced_config_map(namespace).items
        }
        return "dependent" not in names

    assert wait_for(dependent_gone, what="the dependent to be collected")


def test_a_finalizer_holds_deletion_until_it_is_removed(
    api: kubernetes.client.ApiClient, namespace: str
) -> None:
    """An object with a finalizer stays, marked deleted, until it is removed."""
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_config_map(
        namespace,
        {"metadata": {"name": "held", "finalizers": [f"{GROUP}/cleanup"]}},
    )

    core.delete_namespaced_config_map("held", namespace)
    marked = core.read_namespaced_config_map("held", namespace)
    core.patch_namespaced_config_map(
        "held", namespace, {"metadata": {"finalizers": None}}
    )

    def gone() -> bool:
        try:
            core.read_namespaced_config_map("held", namespace)
        except ApiException as err:
            return err.status == 404
        return False

    assert marked.metadata.deletion_timestamp is not None
    assert wait_for(gone, what="the object to go once its finalizer is removed")


def test_a_lease_is_acquired_by_one_holder_at_a_time(
    api: kubernetes.client.ApiClient, namespace: str
) -> None:
    """Two candidates racing for a free Lease: exactly one becomes its holder."""
    coordination = kubernetes.client.CoordinationV1Api(api)
    coordination.create_namespaced_lease(
        namespace, {"metadata": {"name": "leader"}, "spec": {}}
    )
    seen_by_a = coordination.read_namespaced_lease("leader", namespace)
    seen_by_b = coordination.read_namespaced_lease("leader", namespace)

    outcomes = {}
    for holder, seen in (("a", seen_by_a), ("b", seen_by_b)):
        seen.spec.holder_identity = holder
        seen.spec.lease_duration_seconds = 15
        try:
            coordination.replace_namespaced_lease("leader", namespace, seen)
            outcomes[holder] = "acquired"
        except ApiException as err:
            outcomes[holder] = str(err.status)

    lease = coordination.read_namespaced_lease("leader", namespace)
    assert outcomes == {"a": "acquired", "b": "409"}
    assert lease.spec.holder_identity == "a"


def test_nodes_are_ready_with_hostname_and_zone_labels(
    api: kubernetes.client.ApiClient, kubelet: list[str]
) -> None:
    """Every kubelet Node is Ready and labelled with its hostname and zone."""
    core = kubernetes.client.CoreV1Api(api)
    nodes = [core.read_node(name) for name in kubelet]

    zones = {n.metadata.labels["topology.kubernetes.io/zone"] for n in nodes}
    assert all(
        n.metadata.labels["kubernetes.io/hostname"] == n.metadata.name for n in nodes
    )
    assert len(zones) == 2
    assert all(not n.spec.taints for n in nodes)


def test_pods_reach_each_other_at_their_addresses(
    api: kubernetes.client.ApiClient, kubelet: list[str], namespace: str
) -> None:
    """One Redis pod replicates another over the pods' network."""
    del kubelet
    apps = kubernetes.client.AppsV1Api(api)
    core = kubernetes.client.CoreV1Api(api)
    apps.create_namespaced_stateful_set(namespace, _statefulset("pair", 2))
    first, second = wait_for(
        lambda: _ready_pods(core, namespace, "pair", 2), what="2 Redis pods"
    )
    _redis(first.status.pod_ip).set("greeting", "hello")

    _redis(second.status.pod_ip).replicaof(first.status.pod_ip, 6379)
    wait_for(
        lambda: (
            _redis(second.status.pod_ip).info("replication").get("master_link_status")
            == "up"
        ),
        what="the replication link between the two pods",
    )

    assert (
        wait_for(
            lambda: _redis(second.status.pod_ip).get("greeting"), what="the copied key"
        )
        == b"hello"
    )


_WHO_AM_I = """
import json, os, ssl, sys, urllib.request
home = os.environ["ACCOUNT"]
token = open(home + "/token").read()
context = ssl.create_default_context(cafile=home + "/ca.crt")
host = os.environ["KUBERNETES_SERVICE_HOST"]
port = os.environ["KUBERNETES_SERVICE_PORT"]
request = urllib.request.Request(
    f"https://{host}:{port}/apis/authentication.k8s.io/v1/selfsubjectreviews",
    data=json.dumps({"apiVersion": "authentication.k8s.io/v1",
                     "kind": "SelfSubjectReview"}).encode(),
    headers={"Authorization": "Bearer " + token,
             "Content-Type": "application/json"},
    method="POST",
)
with urllib.request.urlopen(request, context=context, timeout=10) as response:
    user = json.load(response)["status"]["userInfo"]["username"]
print(user)
sys.exit(0 if user == sys.argv[1] else 3)
"""


def test_a_pod_reaches_the_api_server_with_its_service_account_token(
    api: kubernetes.client.ApiClient, kubelet: list[str], namespace: str
) -> None:
    """A kredis-image pod authenticates as its ServiceAccount over TLS."""
    del kubelet
    batch = kubernetes.client.BatchV1Api(api)
    job = _job(
        "whoami",
        ["python3", "-c", _WHO_AM_I, f"system:serviceaccount:{namespace}:default"],
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["image"] = "kredis:dev"
    container["env"] = [
        {"name": "ACCOUNT", "value": "/var/run/secrets/kubernetes.io/serviceaccount"}
    ]
    batch.create_namespaced_job(namespace, job)

    outcome = wait_for(
        lambda: _job_condition(batch, namespace, "whoami"), what="Job whoami"
    )

    assert outcome == "Complete"
