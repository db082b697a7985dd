"""Namespace matching with kopf's documented semantics: one answer for the custom resources and their children."""

import pytest

from mlops_operator.handlers import _child_keys, _resource_keys
from mlops_operator.runtime.scope import Scope, match_namespace


@pytest.mark.parametrize("name, pattern, expected", [
    ("team-a", "team-*,!team-x", True),
    ("team-x", "team-*,!team-x", False),
    ("other", "team-*,!team-x", False),
    ("anything", "!kube-*", True),  # a leading exclusion implies a catch-all first
    ("kube-system", "!kube-*", False),
    # kopf's own examples (its docstring of match_namespace)
    ("myapp-pr-123", "myapp-*, !*-pr-*, *pr-123", True),
    ("myapp-pr-456", "myapp-*, !*-pr-*, *pr-123", False),
    ("otherapp-pr-123", "myapp-*, !*-pr-*, *pr-123", False),
    ("otherapp-pr-123", "!*-pr-*, *pr-123", True),
    ("ml", "ml", True),
    ("ml-2", "ml", False),
])
def test_match_namespace_follows_kopf(name, pattern, expected):
    assert match_namespace(name, pattern) is expected


def test_custom_resources_and_children_get_the_same_answer():
    scope = Scope(["team-*,!team-x"])
    for namespace, served in (("team-a", True), ("team-x", False), ("prod", False)):
        md = {"metadata": {"namespace": namespace, "name": "m"}}
        pod = {"metadata": {"namespace": namespace, "name": "m-0", "labels": {"mlops.dev/modeldeployment": "m"}}}
        assert bool(_resource_keys(scope)(md)) is served
        assert bool(_child_keys(scope)(pod)) is served
        assert scope.served(namespace) is served


def test_exact_names_are_watched_one_by_one_and_patterns_cluster_wide():
    assert Scope(["ml", "serving"]).exact() == ["ml", "serving"]
    assert Scope(["ml", "team-*"]).exact() is None
    assert Scope(["!kube-system"]).exact() is None
    assert Scope(None).exact() is None and Scope(None).served("any")
