"""Canary analysis as pure functions: the PromQL asked, what each check says of the answers, how intervals add up,
the answers of Prometheus' HTTP API, and the spec's validation."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from mlops_operator.agent.config import AgentConfig
from mlops_operator.agent.metrics import AgentMetrics
from mlops_operator.api import InvalidSpec, validate_object
from mlops_operator.api.modeldeployment import CanaryAnalysis
from mlops_operator.api.validation import spec_warnings
from mlops_operator.serving.analysis import (
    LATENCY_BUCKETS,
    REQUESTS,
    Answer,
    due_at,
    fold,
    judge,
    passed,
    queries,
    settings_problems,
    verdict,
)
from mlops_operator.serving.prometheus import parse_answer

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def analysis(**fields) -> CanaryAnalysis:
    return CanaryAnalysis.model_validate({"interval": "1m", "minRequests": 20, **fields})


def answers(canary: float = 100, stable: float = 300, canary_errors: float = 0, stable_errors: float = 0,
            latency: dict | None = None, **custom: Answer) -> dict[str, Answer]:
    got = {"requests": Answer({"canary": canary, "stable": stable}),
           "errors": Answer({"canary": canary_errors, "stable": stable_errors}),
           "latency": Answer(latency if latency is not None else {"canary": 0.1, "stable": 0.1})}
    return {**got, **{f"check:{name}": answer for name, answer in custom.items()}}


def by_name(results: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in results}


# --- the queries --------------------------------------------------------------------------------------------------


def test_queries_ask_per_revision_over_the_interval():
    asked = queries(analysis(successRate={"min": 0.99}, latency={"quantile": 0.95, "max": "500ms"}), "ml", "iris")
    sel = 'namespace="ml",model="iris"'
    assert asked == {
        "requests": f"sum by (revision) (increase(mlops_agent_requests_total{{{sel}}}[60s]))",
        "errors": f'sum by (revision) (increase(mlops_agent_requests_total{{{sel},code="5xx"}}[60s]))',
        "latency": (f"histogram_quantile(0.95, sum by (revision, le) "
                    f"(rate(mlops_agent_request_duration_seconds_bucket{{{sel}}}[60s])))"),
    }


def test_custom_queries_fill_their_placeholders():
    query = 'avg(gpu{ns="{{namespace}}",md="{{ name }}",rev="{{revision}}"}[{{interval}}])'
    asked = queries(analysis(interval="2m", checks=[{"name": "gpu", "max": 0.9, "query": query}]), "ml", "iris")
    assert asked["check:gpu"] == 'avg(gpu{ns="ml",md="iris",rev="canary"}[120s])'
    assert "errors" not in asked and "latency" not in asked


def test_the_metric_names_are_the_agents():
    """serving may not import the agent: its copy of the names must agree with what the agent exports."""
    exposition = AgentMetrics(AgentConfig(upstream_port=1, namespace="ml", model="iris", revision="canary")
                              ).exposition().decode()
    assert f'{REQUESTS}{{code="5xx",model="iris",model_hash="",namespace="ml",revision="canary"}}' in exposition
    assert f'{LATENCY_BUCKETS}{{le="0.5",model="iris",model_hash="",namespace="ml",revision="canary"}}' in exposition


# --- one interval ------------------------------------------------------------------------------------------------


def test_a_healthy_canary_passes_every_check():
    spec = analysis(successRate={"min": 0.99}, latency={"max": "500ms"},
                    checks=[{"name": "cpu", "query": "x", "max": 2}])
    results = judge(spec, answers(canary_errors=0.5, cpu=Answer({"": 1.5})), T0)
    assert [(r["name"], r["verdict"]) for r in results] == [
        ("successRate", "Successful"), ("latency", "Successful"), ("cpu", "Successful")]
    rate = by_name(results)["successRate"]
    assert (rate["value"], rate["threshold"], rate["time"]) == (0.995, ">= 0.99", "2024-05-01T12:00:00Z")
    assert verdict(results) == "Successful"


def test_a_failing_success_rate_names_value_and_threshold():
    [rate] = judge(analysis(successRate={"min": 0.99}), answers(canary_errors=38), T0)
    assert (rate["verdict"], rate["value"], rate["threshold"]) == ("Failed", 0.62, ">= 0.99")
    assert rate["message"] == "success rate 0.62 is below the minimum 0.99"


def test_success_rate_relative_to_the_stable():
    spec = analysis(successRate={"maxDegradation": 0.005})
    [ok] = judge(spec, answers(canary_errors=1, stable_errors=3), T0)  # 0.99 vs 0.99
    assert ok["verdict"] == "Successful" and ok["threshold"] == ">= 0.985"
    [bad] = judge(spec, answers(canary_errors=2, stable_errors=0), T0)  # 0.98 vs 1.0
    assert bad["verdict"] == "Failed" and "(stable 1 - 0.005)" in bad["message"]
    [quiet] = judge(spec, answers(stable=5), T0)
    assert quiet["verdict"] == "Inconclusive" and "the stable answered 5 requests" in quiet["message"]
    # Both bounds: the absolute one fails on its own, whatever the stable does.
    [both] = judge(analysis(successRate={"min": 0.99, "maxDegradation": 0.5}), answers(canary_errors=5, stable=0), T0)
    assert both["verdict"] == "Failed"


def test_latency_absolute_and_relative():
    spec = analysis(latency={"quantile": 0.99, "max": "500ms", "maxIncrease": 0.2})
    [fast] = judge(spec, answers(latency={"canary": 0.11, "stable": 0.1}), T0)
    assert (fast["verdict"], fast["threshold"]) == ("Successful", "<= 0.12")
    [slow] = judge(spec, answers(latency={"canary": 0.2, "stable": 0.1}), T0)
    assert slow["verdict"] == "Failed" and slow["message"] == (
        "p99 latency 0.2s is above 0.12s (stable 0.1s x 1.2)")
    [capped] = judge(spec, answers(latency={"canary": 0.6, "stable": 1.0}), T0)
    assert (capped["verdict"], capped["threshold"]) == ("Failed", "<= 0.5")
    # Above the largest bucket: failed, and no infinity in the status (JSON has none).
    [beyond] = judge(analysis(latency={"max": "2s"}), answers(latency={"canary": math.inf}), T0)
    assert (beyond["verdict"], beyond["value"]) == ("Failed", None) and "+Inf" in beyond["message"]
    [none] = judge(analysis(latency={"max": "2s"}), answers(latency={"canary": math.nan}), T0)
    assert none["verdict"] == "Inconclusive"


def test_too_few_requests_make_every_check_inconclusive():
    spec = analysis(successRate={"min": 0.99}, latency={"max": "1s"}, checks=[{"name": "c", "query": "x", "min": 0}])
    results = judge(spec, answers(canary=3, canary_errors=3), T0)
    assert {r["verdict"] for r in results} == {"Inconclusive"} and len(results) == 3
    assert results[0]["message"] == "the canary answered 3 requests in 60s, fewer than minRequests 20"
    assert verdict(results) == "Inconclusive"


def test_prometheus_unreachable_is_inconclusive_never_failed():
    spec = analysis(successRate={"min": 0.99}, latency={"max": "1s"})
    down = {key: Answer(error="http://prom:9090 unreachable: refused") for key in ("requests", "errors", "latency")}
    results = judge(spec, down, T0)
    assert {r["verdict"] for r in results} == {"Inconclusive"}
    assert "unreachable" in results[0]["message"]


def test_custom_checks_without_data_or_with_a_bad_query_are_inconclusive():
    spec = analysis(checks=[{"name": "empty", "query": "x", "min": 1}, {"name": "bad", "query": "(", "max": 1},
                            {"name": "low", "query": "y", "min": 1, "max": 3}])
    results = by_name(judge(spec, answers(empty=Answer({}), bad=Answer(error="bad_data: parse error"),
                                          low=Answer({"": 0.5})), T0))
    assert results["empty"]["verdict"] == "Inconclusive" and results["empty"]["message"] == "the query returned no data"
    assert results["bad"]["verdict"] == "Inconclusive" and "parse error" in results["bad"]["message"]
    assert (results["low"]["verdict"], results["low"]["threshold"]) == ("Failed", ">= 1, <= 3")
    assert verdict(list(results.values())) == "Failed"  # a failure outweighs an inconclusive check


# --- intervals adding up ------------------------------------------------------------------------------------------


def test_fold_counts_per_canary_and_streaks():
    failed = [{"name": "successRate", "verdict": "Failed"}]
    unsure = [{"name": "successRate", "verdict": "Inconclusive"}]
    good = [{"name": "successRate", "verdict": "Successful"}]
    status = fold(None, "abc", unsure, T0)
    status = fold(status, "abc", unsure, T0 + timedelta(minutes=1))
    assert (status["inconclusive"], status["consecutiveInconclusive"], status["failed"]) == (2, 2, 0)
    status = fold(status, "abc", failed, T0 + timedelta(minutes=2))
    assert (status["inconclusive"], status["consecutiveInconclusive"], status["failed"]) == (2, 0, 1)
    status = fold(status, "abc", good, T0 + timedelta(minutes=3))
    assert (status["verdict"], status["failed"], status["lastTime"]) == ("Successful", 1, "2024-05-01T12:03:00Z")
    # Another canary (model or runtime) starts from nothing.
    assert fold(status, "def", good, T0)["failed"] == 0


def test_the_next_analysis_is_an_interval_after_the_step_start_and_the_last_one():
    spec = analysis()
    assert due_at(spec, None, None) is None
    assert due_at(spec, None, T0) == T0 + timedelta(minutes=1)
    last = {"lastTime": "2024-05-01T12:00:30Z"}
    assert due_at(spec, last, T0) == T0 + timedelta(seconds=90)
    # A step that starts later than the last analysis gets a whole window of its own.
    assert due_at(spec, last, T0 + timedelta(minutes=5)) == T0 + timedelta(minutes=6)


def test_a_step_passes_only_on_a_successful_analysis_of_that_step():
    spec = analysis()
    ok = {"verdict": "Successful", "lastTime": "2024-05-01T12:01:00Z"}
    assert passed(spec, ok, T0)
    assert not passed(spec, ok, T0 + timedelta(seconds=1))  # its window began before this step
    assert not passed(spec, {**ok, "verdict": "Inconclusive"}, T0)
    assert not passed(spec, None, T0)


# --- Prometheus' answers ----------------------------------------------------------------------------------------


def test_parse_answer():
    vector = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"revision": "canary"}, "value": [1714564800, "12.5"]},
        {"metric": {"revision": "stable"}, "value": [1714564800, "NaN"]}]}}
    parsed = parse_answer(vector)
    assert parsed.error is None and parsed.values["canary"] == 12.5 and math.isnan(parsed.values["stable"])
    assert parse_answer({"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}}).values == {"": 3.0}
    assert parse_answer({"status": "success", "data": {"resultType": "vector", "result": []}}).values == {}
    error = parse_answer({"status": "error", "errorType": "bad_data", "error": "parse error at char 1"})
    assert error.error == "bad_data: parse error at char 1"
    assert "must give a number" in (parse_answer({"status": "success", "data": {"resultType": "matrix",
                                                                                  "result": []}}).error or "")
    assert parse_answer([1, 2]).error is not None


# --- the spec -------------------------------------------------------------------------------------------------


def md(analysis_spec: dict, **spec) -> dict:
    return {"kind": "ModelDeployment", "metadata": {"name": "iris", "namespace": "ml"},
            "spec": {"model": {"uri": "s3://m/v1"}, "runtime": {"preset": "sklearn"}, **spec,
                     "rollout": {"canary": {"model": {"uri": "s3://m/v2"}, "weight": 10,
                                            "analysis": analysis_spec}}}}


def errors_of(body: dict) -> list[str]:
    with pytest.raises(InvalidSpec) as err:
        validate_object(body)
    return err.value.errors


def test_validation_names_the_field():
    a = "spec.rollout.canary.analysis"
    assert errors_of(md({"interval": 0, "prometheusUrl": "prom:9090", "successRate": {}, "latency": {"quantile": 0.9},
                         "checks": [{"name": "latency", "query": "x{a='{{pod}}'}", "min": 2, "max": 1},
                                    {"name": "q", "query": "x"}], "predictionDrift": {}})) == [
        f"{a}.interval: must be longer than 0s",
        f"{a}.prometheusUrl: 'prom:9090' must be an http:// or https:// URL",
        f"{a}.successRate: set min, maxDegradation (relative to the stable), or both",
        f"{a}.latency: set max, maxIncrease (relative to the stable), or both",
        f"{a}.checks[0].name: 'latency' is already the name of another check",
        f"{a}.checks[0].min: 2.0 is more than max 1.0",
        f"{a}.checks[0].query: unknown placeholder {{{{pod}}}}; use {{{{namespace}}}}, {{{{name}}}}, "
        "{{revision}}, {{interval}}",
        f"{a}.checks[1]: set min, max, or both",
        f"{a}.predictionDrift: reads the prediction log; set spec.monitoring.predictionLog",
    ]
    assert errors_of(md({})) == [f"{a}: set at least one check (successRate, latency, checks, accuracy)"]
    assert errors_of(md({"latency": {"max": "500"}}))[0].startswith(f"{a}.latency.max: ")
    assert errors_of(md({"successRate": {"min": 1.5}}))[0].startswith(f"{a}.successRate.min: ")


def test_a_valid_analysis_parses_with_defaults():
    spec = validate_object(md({"successRate": {"min": 0.99}, "latency": {"max": "0.5s"}}))
    parsed = spec.rollout.canary.analysis
    assert (parsed.interval, parsed.failure_limit, parsed.inconclusive_limit, parsed.min_requests) == ("1m", 0, 3, 10)
    assert (parsed.latency.quantile, parsed.auto_promote, parsed.prometheus_url) == (0.99, False, None)


def test_the_model_checks_parse_with_defaults_and_warn_of_nothing():
    body = md({"predictionDrift": {"test": "psi"}, "accuracy": {"maxDegradation": 0.02}},
              monitoring={"predictionLog": {"uri": "s3://logs/iris"}})
    spec = validate_object(body)
    assert spec_warnings(spec) == []
    parsed = spec.rollout.canary.analysis
    assert (parsed.accuracy.prediction_column, parsed.accuracy.min_labelled) == ("output_predict", 20)
    assert (parsed.prediction_drift.test, parsed.prediction_drift.columns) == ("psi", [])


def test_an_analysis_needs_a_prometheus_url_somewhere():
    spec = validate_object(md({"successRate": {"min": 0.99}}))
    assert settings_problems(spec, "") == [
        "spec.rollout.canary.analysis.prometheusUrl: required, because the operator runs without --prometheus-url "
        "(MLOPS_PROMETHEUS_URL)"]
    assert settings_problems(spec, "http://prometheus:9090") == []
    named = validate_object(md({"successRate": {"min": 0.99}, "prometheusUrl": "http://p:9090"}))
    assert settings_problems(named, "") == []
