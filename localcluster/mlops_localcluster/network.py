"""The pod network of one local cluster: what a CNI plugin and the node's network setup do on a real node.

Owns, all named after the cluster's short id (`cluster_id`, 6 hex digits of the state folder's path), so two
clusters never touch each other's:
- the cluster namespace `mlc-<id>`, joined to the host by the veth pair `mlh<id>` (host end, HOST_SUBNET slot .1)
  / `mlu<id>` (cluster end, .2), with the bridge `mlb<id>` (POD_GATEWAY) and ip_forward inside it;
- one namespace per process pod `mlp-<id>-<n>` (n: the pod address's host number), its `eth0` paired with
  `mlv<id><n hex>` on the bridge (hairpin on), and its hosts file `/etc/netns/mlp-<id>-<n>/hosts`, which
  `ip netns exec` mounts over /etc/hosts for every process of the pod (see HostsWriter);
- on the host: the nat chains `MLC-<id>` (OUTPUT: NodePorts on 127.0.0.1; PREROUTING: the API server from the
  cluster namespace) and `MLC-<id>-POST`, and a blackhole route for SERVICE_CIDR with the cluster's own metric.
`ClusterNetwork.down` removes each of these by name; no other rule, route or namespace is touched. Each network is
also recorded in OWNERS (`<id>`: the state folder that made it), so that a cluster starting later can take down
the network of one that died without `down` (its session killed) and whose folder never starts again.

Addressing: every cluster uses the same pod network POD_CIDR and Service range, since both live only inside its
own namespaces; what is global differs per cluster: the host link's /30 and the NodePort range (its "slot").
Nothing routes out: the cluster namespace has no default route, and the host keeps ip_forward as it is.
Calls: `ip`, `iptables`, `sysctl` (root), the filesystem.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import pathlib
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .errors import ClusterError

log = logging.getLogger("network")

POD_CIDR = ipaddress.IPv4Network("10.244.0.0/16")
POD_GATEWAY = ipaddress.IPv4Address("10.244.0.1")  # the bridge's address in the cluster namespace
SERVICE_CIDR = "10.96.0.0/12"  # a /24 runs out at 254 Services
KUBERNETES_SERVICE_IP = "10.96.0.1"
HOST_SUBNET = ipaddress.IPv4Network("10.250.0.0/16")  # one /30 per slot: 10.250.<slot>.0/30
CLUSTER_DOMAIN = "cluster.local"
NODE_PORT_FIRST, NODE_PORTS_PER_SLOT = 30000, 100  # below the host's ephemeral ports (32768-)
SLOTS = (32767 - NODE_PORT_FIRST + 1) // NODE_PORTS_PER_SLOT
NETNS_ETC = pathlib.Path("/etc/netns")
NETNS_RUN = pathlib.Path("/run/netns")  # where `ip netns add` keeps a namespace's handle
SLOT_LOCK = pathlib.Path("/run/mlops-localcluster-slots.lock")
OWNERS = pathlib.Path("/run/mlops-localcluster-networks")  # one file per network: <id>, holding its state folder
CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)  # setns(2); Python 3.11 has no os.setns
# A kubelet gives a pod's processes the pod's hostname (spec.hostname, else its name), which the pod's hosts file
# maps to its address: programs that find their own address through their hostname (gloo, which PyTorch's DDP
# uses on CPUs) need both. A UTS namespace of its own per process, so the host's name never changes.
SET_HOSTNAME = ("unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"')


def cluster_id(root: pathlib.Path) -> str:
    return hashlib.sha1(str(pathlib.Path(root).resolve()).encode()).hexdigest()[:6]


def _run(*argv: str, check: bool = True, netns: str | None = None, input: str | None = None) -> str:
    cmd = (["ip", "netns", "exec", netns] if netns else []) + list(argv)
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise ClusterError(f"pod network: `{' '.join(cmd)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def supported() -> str:
    """Why this machine cannot have pod networks ("" when it can): root and iproute2/iptables are needed."""
    if os.geteuid() != 0:
        return "not root"
    missing = [t for t in ("ip", "iptables", "bridge") if shutil.which(t) is None]
    return f"missing {', '.join(missing)}" if missing else ""


def connect_in_netns(netns: str, address: tuple[str, int], timeout: float | None = None) -> socket.socket:
    """A TCP connection made from inside the named network namespace, as a process there would make it.

    A socket belongs to the namespace its creator was in when it made it, and setns(2) moves only the calling
    thread; so a short-lived thread enters the namespace, makes the socket and ends, and no thread of this
    process ever changes namespace. Costs about half a millisecond of CPU, against some 40 ms for a process
    started by `ip netns exec`. `address` is numeric: a name would be resolved by the host, not the pod."""
    made: dict[str, Any] = {}

    def make() -> None:
        try:
            fd = os.open(NETNS_RUN / netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _LIBC.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            made["sock"] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            made["error"] = exc

    thread = threading.Thread(target=make, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]
    sock = made["sock"]
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def record_owner(cid: str, root: pathlib.Path) -> None:
    OWNERS.mkdir(parents=True, exist_ok=True)
    (OWNERS / cid).write_text(str(pathlib.Path(root).resolve()))


def owners() -> dict[str, pathlib.Path]:
    """The networks on this host that a cluster recorded (id -> its state folder); `down` forgets them."""
    return {p.name: pathlib.Path(p.read_text()) for p in OWNERS.glob("*") if p.is_file()} if OWNERS.is_dir() else {}


def netns_names() -> list[str]:
    return [line.split()[0] for line in _run("ip", "netns", "list", check=False).splitlines() if line.strip()]


@dataclasses.dataclass(frozen=True)
class ClusterNetwork:
    """The names and addresses of one cluster's network; `up`/`down` make and remove it."""

    cid: str
    slot: int

    # --- names ---
    @property
    def netns(self) -> str:
        return f"mlc-{self.cid}"

    @property
    def host_link(self) -> str:
        return f"mlh{self.cid}"

    @property
    def uplink(self) -> str:
        return f"mlu{self.cid}"

    @property
    def bridge(self) -> str:
        return f"mlb{self.cid}"

    @property
    def bridge_mac(self) -> str:
        """Fixed, locally administered, one per cluster (the cluster id is six hex digits)."""
        return "02:6d:6c:" + ":".join(self.cid[i:i + 2] for i in (0, 2, 4))

    @property
    def chain(self) -> str:
        return f"MLC-{self.cid}"

    @property
    def post_chain(self) -> str:
        return f"MLC-{self.cid}-POST"

    @property
    def pod_netns_prefix(self) -> str:
        return f"mlp-{self.cid}-"

    def pod_netns(self, ip: str) -> str:
        """The namespace of the process pod at `ip` (named by the address, which is unique in the cluster)."""
        return f"{self.pod_netns_prefix}{_host_number(ip)}"

    @property
    def route_metric(self) -> int:
        # The blackhole route is told apart from another cluster's by its metric, derived from the id.
        return 1000 + int(self.cid, 16) % 60000

    # --- addresses ---
    @property
    def host_address(self) -> str:
        """The host's end of the link: the API server answers here for the cluster's pods and kube-proxy."""
        return str(HOST_SUBNET.network_address + self.slot * 256 + 1)

    @property
    def node_address(self) -> str:
        """The cluster namespace's end: NodePorts are DNATed here from the host's loopback."""
        return str(HOST_SUBNET.network_address + self.slot * 256 + 2)

    @property
    def node_ports(self) -> tuple[int, int]:
        first = NODE_PORT_FIRST + self.slot * NODE_PORTS_PER_SLOT
        return first, first + NODE_PORTS_PER_SLOT - 1

    def to_dict(self) -> dict[str, Any]:
        return {"cid": self.cid, "slot": self.slot}

    @classmethod
    def load(cls, path: pathlib.Path) -> ClusterNetwork:
        data = json.loads(pathlib.Path(path).read_text())
        return cls(cid=data["cid"], slot=int(data["slot"]))

    @classmethod
    @contextlib.contextmanager
    def claimed(cls, root: pathlib.Path) -> Iterator[ClusterNetwork]:
        """`choose`, holding a host-wide lock until the block ends: two clusters starting at once (the test suite's
        workers) could otherwise both find a slot free. The block brings the network up, so its host address is
        there, and the slot taken, before the next cluster looks."""
        with open(SLOT_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield cls.choose(root)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @classmethod
    def choose(cls, root: pathlib.Path) -> ClusterNetwork:
        """The cluster's network with a slot no other cluster on this host uses now (see `claimed`)."""
        cid = cluster_id(root)
        taken = {ipaddress.IPv4Address(a.split("/")[0]) for a in _run("ip", "-o", "-4", "addr", "show").split()
                 if a.count(".") == 3 and "/" in a}
        start = int(cid, 16) % SLOTS
        for i in range(SLOTS):
            net = cls(cid, (start + i) % SLOTS)
            if ipaddress.IPv4Address(net.host_address) not in taken:
                return net
        raise ClusterError(f"pod network: all {SLOTS} host link slots in {HOST_SUBNET} are taken")

    # --- up / down ---
    def up(self, apiserver_port: int) -> None:
        """Creates the cluster namespace, its link to the host, the bridge and the host's rules."""
        self.down(self.cid)  # what an earlier, killed cluster of the same folder left
        ns = self.netns
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", self.host_link, "type", "veth", "peer", "name", self.uplink, "netns", ns)
        _run("ip", "addr", "add", f"{self.host_address}/30", "dev", self.host_link)
        _run("ip", "link", "set", self.host_link, "up")
        # Loopback traffic may be DNATed across this link (NodePorts in, the API server out), nowhere else.
        _run("sysctl", "-q", "-w", f"net.ipv4.conf.{self.host_link}.route_localnet=1")
        inside = [
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", f"{self.node_address}/30", "dev", self.uplink],
            ["ip", "link", "set", self.uplink, "up"],
            # A bridge whose address is not set takes its ports' lowest, which changes as pods come and go;
            # pods would keep sending to the gateway's old address, and their connections through it (the API
            # server, Services) would hang until their neighbour entry expired.
            ["ip", "link", "add", self.bridge, "address", self.bridge_mac, "type", "bridge"],
            ["ip", "addr", "add", f"{POD_GATEWAY}/{POD_CIDR.prefixlen}", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
            ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
            # Pods reach the host's end under the cluster's own address, so the host needs no pod routes.
            ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", self.uplink, "-j", "MASQUERADE"],
        ]
        for cmd in inside:
            _run(*cmd, netns=ns)
        _run("ip", "route", "add", "blackhole", SERVICE_CIDR, "metric", str(self.route_metric))
        nat = ["iptables", "-w", "-t", "nat"]
        _run(*nat, "-N", self.chain)
        _run(*nat, "-N", self.post_chain)
        _run(*nat, "-A", self.chain, "-i", self.host_link, "-d", self.host_address, "-p", "tcp", "--dport",
             str(apiserver_port), "-j", "DNAT", "--to-destination", f"127.0.0.1:{apiserver_port}")
        first, last = self.node_ports
        _run(*nat, "-A", self.chain, "-d", "127.0.0.1/32", "-p", "tcp", "--dport", f"{first}:{last}",
             "-j", "DNAT", "--to-destination", self.node_address)
        _run(*nat, "-A", self.post_chain, "-o", self.host_link, "-d", self.node_address, "-j", "MASQUERADE")
        for parent, chain in (("PREROUTING", self.chain), ("OUTPUT", self.chain), ("POSTROUTING", self.post_chain)):
            _run(*nat, "-A", parent, "-j", chain)

    @staticmethod
    def down(cid: str) -> list[str]:
        """Removes every namespace, link, route, rule and hosts file of the cluster `cid`; returns what it found."""
        net = ClusterNetwork(cid, 0)
        removed = []
        for ns in netns_names():
            if ns == net.netns or ns.startswith(net.pod_netns_prefix):
                # Processes left in a pod's namespace (a simulator killed hard) are ours: stop them first.
                for pid in _run("ip", "netns", "pids", ns, check=False).split():
                    try:
                        os.kill(int(pid), 9)
                    except (ProcessLookupError, ValueError):
                        pass
                _run("ip", "netns", "del", ns, check=False)
                removed.append(f"netns {ns}")
        for folder in NETNS_ETC.glob(f"{net.pod_netns_prefix}*"):
            shutil.rmtree(folder, ignore_errors=True)
        if _run("ip", "link", "show", net.host_link, check=False):
            _run("ip", "link", "del", net.host_link, check=False)
            removed.append(f"link {net.host_link}")
        route = ["blackhole", SERVICE_CIDR, "metric", str(net.route_metric)]
        if subprocess.run(["ip", "route", "del", *route], capture_output=True, check=False).returncode == 0:
            removed.append(f"route {' '.join(route)}")
        if shutil.which("iptables"):
            nat = ["iptables", "-w", "-t", "nat"]
            for parent, chain in (("PREROUTING", net.chain), ("OUTPUT", net.chain),
                                  ("POSTROUTING", net.post_chain)):
                unhook = [*nat, "-D", parent, "-j", chain]
                while subprocess.run(unhook, capture_output=True, check=False).returncode == 0:
                    pass
            for chain in (net.chain, net.post_chain):
                if subprocess.run([*nat, "-F", chain], capture_output=True, check=False).returncode == 0:
                    _run(*nat, "-X", chain, check=False)
                    removed.append(f"chain {chain}")
        (OWNERS / cid).unlink(missing_ok=True)
        return removed

    def leftovers(self) -> list[str]:
        """What of this cluster is still on the host (empty after `down`)."""
        found = [f"netns {n}" for n in netns_names() if n == self.netns or n.startswith(self.pod_netns_prefix)]
        if _run("ip", "link", "show", self.host_link, check=False).strip():
            found.append(f"link {self.host_link}")
        routes = _run("ip", "route", "show", "table", "all", check=False)
        found += [f"route {r.strip()}" for r in routes.splitlines()
                  if re.search(rf"\bmetric {self.route_metric}\b", r)]
        rules = _run("iptables", "-w", "-t", "nat", "-S", check=False)
        found += [f"rule {r}" for r in rules.splitlines() if self.chain in r]
        found += [f"file {p}" for p in NETNS_ETC.glob(f"{self.pod_netns_prefix}*")]
        return found

    def proxy_argv(self, kube_proxy: pathlib.Path, kubeconfig: pathlib.Path, node: str) -> list[str]:
        """kube-proxy in iptables mode inside the cluster namespace: its rules never reach the host's tables, and
        its own ports are on the namespace's loopback."""
        return ["ip", "netns", "exec", self.netns, str(kube_proxy), f"--kubeconfig={kubeconfig}",
                "--proxy-mode=iptables", f"--cluster-cidr={POD_CIDR}", f"--hostname-override={node}",
                "--conntrack-max-per-core=0", f"--nodeport-addresses={self.node_address}/32",
                "--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256",
                f"--bind-address={self.node_address}", "--v=1"]


# --- pod addresses --------------------------------------------------------------------------------------------

class IpAllocator:
    """Unique pod IPs from POD_CIDR; the bridge's POD_GATEWAY is never handed out. The same addresses go to
    status.podIP and, for process pods, to their namespace's eth0."""

    def __init__(self, network: ipaddress.IPv4Network = POD_CIDR):
        self.network = network
        self._reserved = {str(POD_GATEWAY)} if POD_GATEWAY in network else set()
        self._hosts = network.num_addresses - 2 - len(self._reserved)
        self._next = 1
        self._by_uid: dict[str, str] = {}
        self._used: set[str] = set()

    def claim(self, uid: str, ip: str) -> None:
        if ip and ipaddress.IPv4Address(ip) in self.network and ip not in self._used and ip not in self._reserved:
            self._by_uid[uid] = ip
            self._used.add(ip)

    def get(self, uid: str) -> str:
        if uid in self._by_uid:
            return self._by_uid[uid]
        if len(self._used) >= self._hosts:
            raise ClusterError(f"pod network {self.network} is full")
        size = self.network.num_addresses - 2
        while True:
            ip = str(self.network.network_address + self._next)
            self._next = self._next % size + 1
            if ip not in self._used and ip not in self._reserved:
                break
        self._by_uid[uid] = ip
        self._used.add(ip)
        return ip

    def release(self, uid: str) -> None:
        ip = self._by_uid.pop(uid, None)
        if ip:
            self._used.discard(ip)


# --- pods -----------------------------------------------------------------------------------------------------

def _host_number(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip)) - int(POD_CIDR.network_address)


def _pod_info(pod: Mapping[str, Any], netns: str, ip: str) -> dict[str, str]:
    meta, spec = pod["metadata"], pod.get("spec", {})
    return {"netns": netns, "ip": ip, "namespace": meta.get("namespace", "default"), "name": meta["name"],
            "hostname": (spec.get("hostname") or meta["name"])[:63].rstrip("-."),  # as a kubelet cuts it
            "subdomain": spec.get("subdomain") or ""}


class PodNetwork:
    """The hook of the process runtime: `setup(pod, ip)` before a pod's first process, `wrap(argv, pod)` for each
    process (exec probes too), `connector(pod)` for HTTP and TCP probes, `teardown(uid)` when the pod is gone."""

    def __init__(self, cluster: ClusterNetwork, kubeconfig: pathlib.Path):
        self.cluster = cluster
        self.kubeconfig = pathlib.Path(kubeconfig)  # points at the API server on cluster.host_address
        self._lock = threading.Lock()
        self._pods: dict[str, dict[str, str]] = {}  # uid -> {netns, ip, namespace, name, hostname, subdomain}
        self.hosts = HostsWriter(self)

    def setup(self, pod: Mapping[str, Any], ip: str) -> str:
        """Gives the pod its namespace with `eth0` at `ip` on the bridge (idempotent); returns `ip`."""
        uid, ns = pod["metadata"]["uid"], self.cluster.pod_netns(ip)
        info = _pod_info(pod, ns, ip)
        with self._lock:  # first: prune() keeps what is known here, even half made
            self._pods[uid] = info
        if ns not in netns_names():
            try:
                self._create(ns, ip)
            except ClusterError:
                self._remove(ns)  # half made: the next try starts afresh
                raise
        etc = NETNS_ETC / ns
        etc.mkdir(parents=True, exist_ok=True)
        # No DNS server: names come from the hosts file; a lookup that misses fails fast on the pod's loopback.
        (etc / "resolv.conf").write_text(f"nameserver 127.0.0.1\nsearch {info['namespace']}.svc.{CLUSTER_DOMAIN} "
                                         f"svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\noptions ndots:5 attempts:1\n")
        self.hosts.write_one(info)
        return ip

    def _create(self, ns: str, ip: str) -> None:
        peer = f"mlv{self.cluster.cid}{_host_number(ip):x}"
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", peer, "netns", self.cluster.netns, "type", "veth", "peer", "name", "eth0",
             "netns", ns)
        _run("ip", "link", "set", peer, "master", self.cluster.bridge, "up", netns=self.cluster.netns)
        # hairpin: a pod that connects to a Service may land on itself
        _run("bridge", "link", "set", "dev", peer, "hairpin", "on", netns=self.cluster.netns)
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "addr", "add", f"{ip}/{POD_CIDR.prefixlen}", "dev", "eth0"],
                    ["ip", "link", "set", "eth0", "up"],
                    ["ip", "route", "add", "default", "via", str(POD_GATEWAY)]):
            _run(*cmd, netns=ns)

    def wrap(self, argv: list[str], pod: Mapping[str, Any]) -> list[str]:
        """argv run inside the pod's namespace (its /etc/hosts mounted) with the pod's hostname, or unchanged for a
        pod without one."""
        with self._lock:
            info = self._pods.get(pod["metadata"].get("uid", ""))
        if not info:
            return list(argv)
        return ["ip", "netns", "exec", info["netns"], *SET_HOSTNAME, info["hostname"], *argv]

    def connector(self, pod: Mapping[str, Any]) -> Callable[..., socket.socket] | None:
        """`connect(address, timeout)` from inside the pod's namespace, for HTTP and TCP probes (from the host's
        namespace a pod's address is refused, and 127.0.0.1 would be the host's own); None for a pod without one."""
        with self._lock:
            info = self._pods.get(pod["metadata"].get("uid", ""))
        if not info:
            return None
        netns = info["netns"]
        return lambda address, timeout=None, source_address=None: connect_in_netns(netns, address, timeout)

    def env(self) -> dict[str, str]:
        """What a kubelet puts in every container for the API server (the `kubernetes` Service)."""
        return {"KUBERNETES_SERVICE_HOST": KUBERNETES_SERVICE_IP, "KUBERNETES_SERVICE_PORT": "443",
                "KUBERNETES_PORT": f"tcp://{KUBERNETES_SERVICE_IP}:443"}

    def teardown(self, uid: str) -> None:
        with self._lock:
            info = self._pods.pop(uid, None)
        if info:
            self._remove(info["netns"])

    def prune(self, pods: Iterable[Mapping[str, Any]]) -> None:
        """After a full list: adopts the namespaces of listed pods (made by an earlier simulator, so their hosts
        files stay current) and removes the others (their pods went while no simulator watched)."""
        existing = set(netns_names())
        for pod in pods:
            ip = pod.get("status", {}).get("podIP") or ""
            if ip and ipaddress.IPv4Address(ip) in POD_CIDR and self.cluster.pod_netns(ip) in existing:
                with self._lock:
                    self._pods.setdefault(pod["metadata"]["uid"], _pod_info(pod, self.cluster.pod_netns(ip), ip))
        with self._lock:
            keep = {i["netns"] for i in self._pods.values()}
        for ns in existing:
            if ns.startswith(self.cluster.pod_netns_prefix) and ns not in keep:
                self._remove(ns)

    @staticmethod
    def _remove(ns: str) -> None:
        _run("ip", "netns", "del", ns, check=False)  # its veth pair goes with it
        shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)

    def pods(self) -> list[dict[str, str]]:
        with self._lock:
            return [dict(i) for i in self._pods.values()]


# --- names ----------------------------------------------------------------------------------------------------

def service_names(name: str, namespace: str) -> list[str]:
    return [f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"]


def hosts_entries(services: Iterable[Mapping[str, Any]], endpoints: Iterable[Mapping[str, Any]]) -> dict:
    """{(namespace, ip): [names]} from Services (ClusterIP) and, for headless Services, their ready endpoints
    (the Service's names, and `<hostname>.<service>.<ns>.svc.cluster.local` for endpoints with a hostname)."""
    entries: dict[tuple[str, str], list[str]] = {}
    headless = set()
    for svc in services:
        meta, spec = svc["metadata"], svc.get("spec", {})
        ip = spec.get("clusterIP") or ""
        if ip == "None":
            headless.add((meta["namespace"], meta["name"]))
        elif ip and spec.get("type") != "ExternalName":
            entries.setdefault((meta["namespace"], ip), []).append(meta["name"])
    for ep in endpoints:
        key = (ep["metadata"]["namespace"], ep["metadata"]["name"])
        if key not in headless:
            continue
        ns, svc = key
        for subset in ep.get("subsets") or []:
            for addr in subset.get("addresses") or []:
                names = entries.setdefault((ns, addr["ip"]), [])
                names.append(svc)
                if addr.get("hostname"):
                    names.append(f"{addr['hostname']}.{svc}.{ns}.svc.{CLUSTER_DOMAIN}")
    return entries


def hosts_file(entries: Mapping[tuple[str, str], list[str]], pod: Mapping[str, str]) -> str:
    """A pod's /etc/hosts: its own names, then every Service; short names (`<svc>`) only for its own namespace,
    since a hosts file knows no search list."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    own = [pod["hostname"]]
    if pod.get("subdomain"):
        own.insert(0, f"{pod['hostname']}.{pod['subdomain']}.{pod['namespace']}.svc.{CLUSTER_DOMAIN}")
    lines.append(f"{pod['ip']}\t{' '.join(own)}")
    for (ns, ip), names in sorted(entries.items()):
        words = []
        for name in names:
            if name.endswith(f".svc.{CLUSTER_DOMAIN}"):
                words.append(name)
                continue
            words += ([name] if ns == pod["namespace"] else []) + service_names(name, ns)
        lines.append(f"{ip}\t{' '.join(dict.fromkeys(words))}")
    return "\n".join(lines) + "\n"


class HostsWriter:
    """Keeps every pod's hosts file current: lists Services and Endpoints every `period` seconds and rewrites a
    file only when its text changes. Chosen over a DNS server: no process or port to run per cluster, and the
    files can be read to see what a pod resolves. Files are rewritten in place: `ip netns exec` bind-mounts the
    file itself, so a rename would leave running pods with the old one."""

    def __init__(self, network: PodNetwork, period: float = 1.0):
        self.network, self.period = network, period
        self._entries: dict = {}
        self._lock = threading.Lock()

    def write_one(self, pod: Mapping[str, str]) -> None:
        path = NETNS_ETC / pod["netns"] / "hosts"
        with self._lock:
            text = hosts_file(self._entries, pod)
        try:
            if path.exists() and path.read_text() == text:
                return
            with open(path, "r+" if path.exists() else "w") as f:
                f.write(text)
                f.truncate()
        except OSError as exc:  # the pod went away meanwhile
            log.debug("hosts file %s: %s", path, exc)

    def refresh(self, services: list, endpoints: list) -> None:
        with self._lock:
            self._entries = hosts_entries(services, endpoints)
        for pod in self.network.pods():
            self.write_one(pod)

    def loop(self, get: Callable[[str], Any], stopping: threading.Event) -> None:
        """`get(path)` reads the API (the simulator's Kube.get)."""
        while not stopping.is_set():
            try:
                services = (get("/api/v1/services") or {}).get("items") or []
                endpoints = (get("/api/v1/endpoints") or {}).get("items") or []
                self.refresh(services, endpoints)
            except Exception as exc:  # noqa: BLE001 - the API server may be restarting; try again next period
                log.warning("hosts files: %s: %s", type(exc).__name__, exc)
            stopping.wait(self.period)
