"""The pod network's pure parts: per-cluster names and addresses, pod addresses, hosts files."""

from __future__ import annotations

import pathlib

from mlops_localcluster.network import (
    NODE_PORT_FIRST,
    SLOTS,
    ClusterNetwork,
    IpAllocator,
    cluster_id,
    hosts_entries,
    hosts_file,
)


def test_names_and_ranges_differ_between_clusters_and_fit_the_kernels_limits():
    a = ClusterNetwork(cluster_id(pathlib.Path("/tmp/one")), 0)
    b = ClusterNetwork(cluster_id(pathlib.Path("/tmp/two")), 1)
    assert a.cid != b.cid and len(a.cid) == 6
    for net in (a, b):
        for link in (net.host_link, net.uplink, net.bridge, f"mlv{net.cid}{0xfffe:x}"):
            assert len(link) <= 15  # IFNAMSIZ - 1
    assert {a.netns, a.host_link, a.chain, a.route_metric}.isdisjoint({b.netns, b.host_link, b.chain, b.route_metric})
    assert a.node_ports == (NODE_PORT_FIRST, NODE_PORT_FIRST + 99) and b.node_ports[0] == a.node_ports[1] + 1
    last = ClusterNetwork(a.cid, SLOTS - 1)
    assert last.node_ports[1] <= 32767  # below the host's ephemeral ports and inside the API server's limit
    assert (a.host_address, a.node_address) == ("10.250.0.1", "10.250.0.2")
    assert b.host_address == "10.250.1.1"
    assert a.pod_netns("10.244.1.2") == f"mlp-{a.cid}-258"


def test_pod_addresses_never_take_the_bridge_gateway_and_stay_unique():
    ips = IpAllocator()
    ips.claim("stale", "10.244.0.1")  # the gateway is never a pod's, even if a status says so
    first = ips.get("a")
    assert first == "10.244.0.2" and ips.get("a") == first
    ips.claim("old", "10.244.0.3")
    assert ips.get("b") not in (first, "10.244.0.3", "10.244.0.1")
    ips.release("a")
    assert "10.244.0.1" not in {ips.get(str(n)) for n in range(300)}


SERVICES = [
    {"metadata": {"namespace": "ml", "name": "iris"}, "spec": {"clusterIP": "10.96.0.10"}},
    {"metadata": {"namespace": "ml", "name": "workers"}, "spec": {"clusterIP": "None"}},
    {"metadata": {"namespace": "other", "name": "db"}, "spec": {"clusterIP": "10.96.0.11"}},
    {"metadata": {"namespace": "other", "name": "ext"}, "spec": {"type": "ExternalName", "externalName": "x"}},
]
ENDPOINTS = [
    {"metadata": {"namespace": "ml", "name": "workers"},
     "subsets": [{"addresses": [{"ip": "10.244.0.7", "hostname": "rank-0"}, {"ip": "10.244.0.8"}],
                  "notReadyAddresses": [{"ip": "10.244.0.9", "hostname": "rank-2"}]}]},
    {"metadata": {"namespace": "ml", "name": "iris"}, "subsets": [{"addresses": [{"ip": "10.244.0.5"}]}]},
]
POD = {"ip": "10.244.0.5", "namespace": "ml", "hostname": "iris-0", "subdomain": "", "netns": "x", "name": "iris-0"}


def lines_of(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        ip, *names = line.split()
        out.setdefault(ip, set()).update(names)
    return out


def test_a_pods_hosts_file_names_services_short_only_in_its_own_namespace():
    hosts = lines_of(hosts_file(hosts_entries(SERVICES, ENDPOINTS), POD))
    assert {"iris", "iris.ml", "iris.ml.svc", "iris.ml.svc.cluster.local"} <= hosts["10.96.0.10"]
    assert hosts["10.96.0.11"] == {"db.other", "db.other.svc", "db.other.svc.cluster.local"}
    assert "iris-0" in hosts["10.244.0.5"] and "localhost" in hosts["127.0.0.1"]
    # headless: the Service's names on each ready endpoint, a hostname's own name, never the not-ready one
    assert {"workers", "workers.ml.svc.cluster.local", "rank-0.workers.ml.svc.cluster.local"} <= hosts["10.244.0.7"]
    assert "workers" in hosts["10.244.0.8"] and "10.244.0.9" not in hosts
    assert not any("ext" in n for names in hosts.values() for n in names)


def test_a_pod_with_a_subdomain_knows_its_own_full_name():
    pod = {**POD, "hostname": "rank-0", "subdomain": "workers", "ip": "10.244.0.7"}
    assert "rank-0.workers.ml.svc.cluster.local" in lines_of(hosts_file({}, pod))["10.244.0.7"]
