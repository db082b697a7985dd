"""docs/grafana-dashboard.json plots only metrics the operator exports (a renamed metric breaks the test, not the
dashboard)."""

import json
import pathlib
import re

from prometheus_client import REGISTRY

from mlops_operator import metrics  # noqa: F401  (registers the operator's metrics)

DASHBOARD = pathlib.Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "le", "label_values", "job", "controller",
                "result", "name", "method", "code", "verb", "kind", "phase", "namespace", "outcome", "instance"}


def exported() -> set[str]:
    # Labelled series appear only once used: derive the series names from each family's name and type.
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_every_panel_queries_an_exported_metric():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"]
    have = exported()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^]]*\]', "", target["expr"])
            names = {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if w not in PROMQL_WORDS}
            assert names, target["expr"]
            assert names <= have, f"{panel['title']}: {names - have} not exported"
