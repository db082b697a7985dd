"""The simulated node pool of the local cluster: what nodes exist and how they are registered.

Owns: the pool definition (dataclasses, loadable from YAML), the Node manifests and status patches (pure), and
`register()`, which makes the cluster's Node objects match the pool. Calls: the CoreV1Api it is given.

No kubelet runs anywhere: a Node is created, its /status is patched to look like a Ready kubelet's, and the
`node.kubernetes.io/not-ready` taint that the API server's admission adds on creation is removed (our
controller-manager runs without the node lifecycle controller, so nothing adds it back). The simulator
(`simulator.py`) then plays kubelet for pods bound to these nodes.

Pool file (YAML)::

    nodes:
      - name: gpu-node          # with count: gpu-node-0, gpu-node-1, ...; without: the name as is
        count: 2
        cpu: "64"
        memory: 512Gi
        gpus: 8
        gpuProduct: NVIDIA-H100-80GB-HBM3
        labels: {team: ml}       # added to the standard labels
        taints:                  # omitted: GPU nodes get nvidia.com/gpu=present:NoSchedule; [] means none
          - {key: nvidia.com/gpu, value: present, effect: NoSchedule}
      - name: cpu-node-0
        cpu: "32"
        memory: 128Gi
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import pathlib
import re
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

from .errors import ClusterError

KUBELET_VERSION = "v1.20.2"
SIMULATED_LABEL = "sim.mlops.dev/simulated"  # every pool node carries it; the simulator trusts it too
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
GPU_TAINT_DEFAULT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
NODE_ADDRESS_BASE = ipaddress.IPv4Address("172.20.0.10")  # host IPs of pool nodes, in pool order
SMP = "application/strategic-merge-patch+json"


@dataclasses.dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str = ""

    def to_dict(self) -> dict[str, str]:
        d = {"key": self.key, "effect": self.effect}
        if self.value:
            d["value"] = self.value
        return d


@dataclasses.dataclass(frozen=True)
class SimNode:
    name: str
    cpu: str = "32"
    memory: str = "128Gi"
    pods: str = "110"
    ephemeral_storage: str = "1Ti"
    gpus: int = 0
    gpu_product: str = DEFAULT_GPU_PRODUCT
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    taints: tuple[Taint, ...] | None = None  # None: the default for the node's kind (GPU taint on GPU nodes)
    address: str = ""  # InternalIP; empty: assigned from NODE_ADDRESS_BASE by position in the pool

    def all_labels(self) -> dict[str, str]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
            SIMULATED_LABEL: "true",
        }
        if self.gpus:
            labels.update({
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": self.gpu_product,
                "nvidia.com/gpu.count": str(self.gpus),
            })
        labels.update(self.labels)
        return labels

    def all_taints(self) -> list[dict[str, str]]:
        if self.taints is not None:
            return [t.to_dict() for t in self.taints]
        return [dict(GPU_TAINT_DEFAULT)] if self.gpus else []

    def resources(self) -> dict[str, str]:
        res = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods, "ephemeral-storage": self.ephemeral_storage}
        if self.gpus:
            res[GPU_RESOURCE] = str(self.gpus)
        return res


@dataclasses.dataclass(frozen=True)
class NodePool:
    nodes: tuple[SimNode, ...]

    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def address_of(self, name: str) -> str:
        for i, node in enumerate(self.nodes):
            if node.name == name:
                return node.address or str(NODE_ADDRESS_BASE + i)
        raise KeyError(name)

    def host_ips(self) -> dict[str, str]:
        return {n.name: self.address_of(n.name) for n in self.nodes}


def default_pool() -> NodePool:
    return NodePool(nodes=(
        SimNode(name="gpu-node-0", cpu="64", memory="512Gi", gpus=8),
        SimNode(name="gpu-node-1", cpu="64", memory="512Gi", gpus=8),
        SimNode(name="cpu-node-0", cpu="32", memory="128Gi"),
    ))


def pool_from_dict(data: Mapping[str, Any]) -> NodePool:
    entries = data.get("nodes")
    if not isinstance(entries, list) or not entries:
        raise ClusterError("node pool: `nodes` must be a non-empty list")
    nodes: list[SimNode] = []
    for entry in entries:
        nodes.extend(_nodes_from_entry(entry))
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ClusterError(f"node pool: duplicate node names in {names}")
    return NodePool(nodes=tuple(nodes))


def load_pool(path: str | pathlib.Path | None) -> NodePool:
    """The pool from a YAML file; the default pool when path is None."""
    if path is None:
        return default_pool()
    try:
        data = yaml.safe_load(pathlib.Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ClusterError(f"node pool: cannot read {path}: {exc}") from exc
    return pool_from_dict(data)


def _nodes_from_entry(entry: Mapping[str, Any]) -> Iterable[SimNode]:
    if not isinstance(entry, Mapping) or not entry.get("name"):
        raise ClusterError(f"node pool: every node needs a name: {entry!r}")
    known = {"name", "count", "cpu", "memory", "pods", "ephemeralStorage", "gpus", "gpuProduct", "labels",
             "taints", "address"}
    unknown = set(entry) - known
    if unknown:
        raise ClusterError(f"node pool: unknown keys {sorted(unknown)} in node {entry['name']!r}")
    taints = entry.get("taints")
    fields = dict(
        cpu=str(entry.get("cpu", "32")),
        memory=str(entry.get("memory", "128Gi")),
        pods=str(entry.get("pods", "110")),
        ephemeral_storage=str(entry.get("ephemeralStorage", "1Ti")),
        gpus=int(entry.get("gpus", 0)),
        gpu_product=str(entry.get("gpuProduct", DEFAULT_GPU_PRODUCT)),
        labels={str(k): str(v) for k, v in (entry.get("labels") or {}).items()},
        taints=None if taints is None else tuple(
            Taint(key=t["key"], effect=t["effect"], value=str(t.get("value", ""))) for t in taints),
    )
    count = entry.get("count")
    if count is None:
        return [SimNode(name=entry["name"], address=str(entry.get("address", "")), **fields)]
    return [SimNode(name=f"{entry['name']}-{i}", **fields) for i in range(int(count))]


# --- pure: what the API should hold --------------------------------------------------------------------------

def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_manifest(node: SimNode) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": node.all_labels()},
        "spec": {"taints": node.all_taints()} if node.all_taints() else {},
    }


def node_status(node: SimNode, address: str, now: str | None = None) -> dict[str, Any]:
    now = now or _now()

    def cond(type_: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {"type": type_, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now}

    return {
        "capacity": node.resources(),
        "allocatable": node.resources(),
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status (simulated)"),
        ],
        "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": node.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": node.name, "systemUUID": node.name, "bootID": node.name,
            "kernelVersion": "5.10.0-sim", "osImage": "mlops-operator simulated node",
            "containerRuntimeVersion": "containerd://1.4.3-sim",
            "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux", "architecture": "amd64",
        },
    }


def node_problems(node: SimNode, observed: Mapping[str, Any]) -> list[str]:
    """What differs between an observed Node (API JSON dict) and the pool's node; empty when all is right."""
    problems = []
    meta, spec, status = observed.get("metadata", {}), observed.get("spec", {}), observed.get("status", {})
    labels = meta.get("labels") or {}
    for k, v in node.all_labels().items():
        if labels.get(k) != v:
            problems.append(f"label {k}={labels.get(k)!r}, want {v!r}")
    taints = [{k: t[k] for k in ("key", "value", "effect") if t.get(k)} for t in spec.get("taints") or []]
    if sorted(map(str, taints)) != sorted(map(str, node.all_taints())):
        problems.append(f"taints {taints}, want {node.all_taints()}")
    if spec.get("unschedulable"):
        problems.append("node is cordoned")
    alloc = status.get("allocatable") or {}
    for k, v in node.resources().items():
        if quantity(alloc.get(k)) != quantity(v):  # the API server canonicalizes: "1000" reads back as "1k"
            problems.append(f"allocatable {k}={alloc.get(k)!r}, want {v!r}")
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    if not ready or ready[0].get("status") != "True":
        problems.append("Ready condition is not True")
    return problems


_SUFFIX = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
           "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
           "P": Decimal(10) ** 15, "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20,
           "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60}


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity as a number (`1k` == `1000`, `1Gi` == `1024Mi`); None when it is not one."""
    m = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)", str(value or "").strip())
    if not m or m.group(2) not in _SUFFIX:
        return None
    try:
        return Decimal(m.group(1)) * _SUFFIX[m.group(2)]
    except InvalidOperation:
        return None


# --- I/O -------------------------------------------------------------------------------------------------------

def register(core_v1_api, pool: NodePool | None = None, attempts: int = 5) -> None:
    """Make the cluster's Nodes match the pool: create, set labels and taints, patch status. Idempotent.

    Raises ClusterError when a node still differs after `attempts` rounds.
    """
    from kubernetes.client.exceptions import ApiException

    pool = pool or default_pool()
    api_client = core_v1_api.api_client
    for node in pool.nodes:
        problems: list[str] = []
        for attempt in range(attempts):
            try:
                core_v1_api.create_node(node_manifest(node))
            except ApiException as exc:
                if exc.status != 409:
                    raise ClusterError(f"cannot create node {node.name}: {exc.status} {exc.reason}") from exc
            # Taints are replaced as a whole (no merge key): this drops node.kubernetes.io/not-ready.
            core_v1_api.patch_node(node.name, {"metadata": {"labels": node.all_labels()},
                                               "spec": {"taints": node.all_taints() or None, "unschedulable": None}},
                                   _content_type=SMP)
            core_v1_api.patch_node_status(node.name, {"status": node_status(node, pool.address_of(node.name))},
                                          _content_type=SMP)
            observed = api_client.sanitize_for_serialization(core_v1_api.read_node(node.name))
            problems = node_problems(node, observed)
            if not problems:
                break
            time.sleep(0.2 * (attempt + 1))
        if problems:
            raise ClusterError(f"node {node.name} is not as registered: {'; '.join(problems)}")
