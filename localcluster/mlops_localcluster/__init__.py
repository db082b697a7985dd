"""The project's own local Kubernetes: real etcd, kube-apiserver, controller manager and scheduler built from
Debian's source package, plus simulated nodes (see nodes.py and simulator.py) that play kubelet, and a pod
network with a real kube-proxy (network.py; docs/localcluster.md).

Public face: `LocalCluster` (up, down, status, running), `build.ensure`, and `python -m mlops_localcluster`.
"""

from .controlplane import LocalCluster, default_root
from .errors import ClusterError

__all__ = ["LocalCluster", "ClusterError", "default_root"]
