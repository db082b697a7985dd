"""Two local clusters on one host at once (the suite's two workers): each knows its own processes and takes its
own pod network slot."""

from __future__ import annotations

import pathlib
import subprocess
import threading
import time

import pytest

from mlops_localcluster import network
from mlops_localcluster.controlplane import _cmdline, _is_ours


def started(*args: str) -> subprocess.Popen:
    """A shell whose command line holds args, once it shows them (a fork shows its parent's until it execs)."""
    proc = subprocess.Popen(["sh", "-c", "sleep 30; :", "sh", *args])
    deadline = time.monotonic() + 10
    while not _cmdline(proc.pid).startswith("sh ") and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


def test_a_process_is_ours_only_when_it_names_our_folder_not_one_that_begins_the_same(tmp_path):
    root = tmp_path / ".cluster"
    proc = started(f"--data-dir={root}-gw1/etcd")
    try:
        assert not _is_ours(proc.pid, str(root))
        assert _is_ours(proc.pid, f"{root}-gw1")
    finally:
        proc.kill()
        proc.wait()
    ours = started(f"--data-dir={root}/etcd", str(root))
    try:
        assert _is_ours(ours.pid, str(root))
    finally:
        ours.kill()
        ours.wait()


@pytest.mark.skipif(bool(network.supported()), reason="pod networks need root and iproute2")
def test_a_slot_is_claimed_by_one_cluster_at_a_time(tmp_path):
    """The second cluster looks for a free slot only once the first has left the block that brings its link up."""
    order: list[str] = []
    first_in, second_started = threading.Event(), threading.Event()

    def first() -> None:
        with network.ClusterNetwork.claimed(tmp_path / "one"):
            order.append("first in")
            first_in.set()
            second_started.wait(5)
            threading.Event().wait(0.3)  # time for the second to get in, were the lock not held
            order.append("first out")

    def second() -> None:
        first_in.wait(5)
        second_started.set()
        with network.ClusterNetwork.claimed(tmp_path / "two"):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert order == ["first in", "first out", "second in"]


def test_a_cluster_starting_takes_down_only_the_networks_of_clusters_that_died_without_down(tmp_path, monkeypatch):
    """A session killed mid-run leaves its clusters' namespaces, links and rules; its folders may never start
    again. The next cluster to start removes them, and nothing of a cluster that is running or starting."""
    import json

    from mlops_localcluster import controlplane

    monkeypatch.setattr(network, "OWNERS", tmp_path / "owners")
    downed: list[str] = []
    monkeypatch.setattr(network.ClusterNetwork, "down", staticmethod(lambda cid: downed.append(cid) or [cid]))
    exited = subprocess.Popen(["true"])
    exited.wait()
    long_ago = time.time() - 2 * controlplane.STARTING_GRACE

    def cluster(name: str, started_at: float, pids: list[int]) -> pathlib.Path:
        root = tmp_path / name
        lay = controlplane.Layout(root)
        lay.root.mkdir()
        lay.state.write_text(json.dumps({"started": started_at, "components": {
            f"c{i}": {"pid": pid, "marker": str(root)} for i, pid in enumerate(pids)}}))
        network.record_owner(name, root)
        return root

    running = cluster("running", long_ago, [])
    alive = started(f"--data-dir={running}/etcd")
    try:
        controlplane.LocalCluster(running)._write_state(
            {"started": long_ago, "components": {"etcd": {"pid": alive.pid, "marker": str(running)}}})
        cluster("killed", long_ago, [exited.pid])
        cluster("killed-just-now", time.time(), [exited.pid])
        cluster("starting", time.time(), [])
        cluster("never-started", long_ago, [])
        cluster("own", long_ago, [])
        network.record_owner("removed", tmp_path / "removed")  # a folder deleted with its cluster still up
        dead = ["killed", "killed-just-now", "never-started", "removed"]
        assert sorted(controlplane._sweep_dead_networks("own")) == dead
        assert sorted(downed) == dead
    finally:
        alive.kill()
        alive.wait()
