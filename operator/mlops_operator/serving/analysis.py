"""Canary analysis as pure functions: which PromQL to ask, what the answers say per check, and how the verdicts of
successive intervals add up in status.canary.analysis. No I/O: serving/prometheus.py asks, canary.py acts.

Each check of an interval is Successful, Failed or Inconclusive. Inconclusive means no judgement: Prometheus did
not answer, it had no data, or a revision answered fewer than minRequests requests in the interval (a quiet canary
must not fail for want of traffic). The interval's verdict is Failed when any check failed, else Inconclusive
when any was, else Successful.

What has been counted lives in the status only (its `lastTime`, counts and `canary` digest), so an interval is
judged from the status the reconcile read: a restart resumes where the status says, and a reconcile from a stale
cache counts nothing, because its status write is refused (reconcile.py writes it with if_current).

The metric names are the inference agent's (agent/metrics.py; tests/unit/test_analysis.py checks they agree):
serving may not import the agent (the kinds stay independent).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from datetime import datetime, timedelta

from ..api.common import duration_seconds
from ..api.modeldeployment import Canary, CanaryAnalysis, ModelDeploymentSpec, latency_seconds
from ..k8s.conditions import format_time, parse_time
from . import accuracy, predictiondrift

REQUESTS = "mlops_agent_requests_total"
LATENCY_BUCKETS = "mlops_agent_request_duration_seconds_bucket"
CANARY, STABLE = "canary", "stable"  # the agent's revision label
SUCCESSFUL, FAILED, INCONCLUSIVE = "Successful", "Failed", "Inconclusive"
BUILTIN = ("successRate", "latency")


@dataclasses.dataclass(frozen=True)
class Answer:
    """One query's answer: values by the `revision` label ("" for a sample without one), or why there is none."""

    values: dict[str, float] = dataclasses.field(default_factory=dict)
    error: str | None = None


def canary_digest(canary: Canary) -> str:
    """A short name for the canary's model and runtime: the analysis counts belong to it."""
    what = {"model": canary.model.to_dict() if canary.model else None,
            "runtime": canary.runtime.to_dict() if canary.runtime else None}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


def interval_seconds(analysis: CanaryAnalysis) -> int:
    return duration_seconds(analysis.interval)


def window(analysis: CanaryAnalysis) -> str:
    return f"{interval_seconds(analysis)}s"


def custom_query(query: str, namespace: str, name: str, window_: str) -> str:
    values = {"namespace": namespace, "name": name, "revision": CANARY, "interval": window_}
    for key, value in values.items():
        query = query.replace("{{" + key + "}}", value).replace("{{ " + key + " }}", value)
    return query


def queries(analysis: CanaryAnalysis, namespace: str, name: str) -> dict[str, str]:
    """The PromQL per answer the checks need, by key: requests, errors, latency, check:<name>. Request counts,
    errors and latency come per revision (canary and stable in one query, over the same window)."""
    w = window(analysis)
    selector = f'namespace="{namespace}",model="{name}"'
    asked = {"requests": f"sum by (revision) (increase({REQUESTS}{{{selector}}}[{w}]))"}
    if analysis.success_rate is not None:
        asked["errors"] = f'sum by (revision) (increase({REQUESTS}{{{selector},code="5xx"}}[{w}]))'
    if analysis.latency is not None:
        asked["latency"] = (f"histogram_quantile({analysis.latency.quantile}, sum by (revision, le) "
                            f"(rate({LATENCY_BUCKETS}{{{selector}}}[{w}])))")
    for check in analysis.checks:
        asked[f"check:{check.name}"] = custom_query(check.query, namespace, name, w)
    return asked


# --- one interval -----------------------------------------------------------------------------------------------


def _number(value: float | None) -> float | None:
    """A value status can hold (JSON has no NaN or infinity)."""
    return round(value, 6) if value is not None and math.isfinite(value) else None


def _fmt(value: float) -> str:
    return "+Inf" if value == math.inf else f"{value:.4g}"


def _result(name: str, verdict: str, value: float | None, threshold: str | None, message: str, now: datetime,
            ) -> dict:
    return {"name": name, "verdict": verdict, "value": _number(value), "threshold": threshold, "message": message,
            "time": format_time(now)}


def _requests(answers: dict[str, Answer], revision: str) -> float:
    return answers["requests"].values.get(revision, 0.0)


def _success_rate(analysis: CanaryAnalysis, answers: dict[str, Answer], now: datetime) -> dict:
    rule = analysis.success_rate
    assert rule is not None
    errors = answers["errors"]
    if errors.error is not None:
        return _result("successRate", INCONCLUSIVE, None, None, f"Prometheus: {errors.error}", now)

    def rate(revision: str) -> float:
        total = _requests(answers, revision)
        return 1 - min(errors.values.get(revision, 0.0), total) / total

    value = rate(CANARY)
    bounds = []
    if rule.min_value is not None:
        bounds.append(rule.min_value)
        if value < rule.min_value:
            return _result("successRate", FAILED, value, f">= {_fmt(rule.min_value)}",
                           f"success rate {_fmt(value)} is below the minimum {_fmt(rule.min_value)}", now)
    stable_note = ""
    if rule.max_degradation is not None:
        stable_requests = _requests(answers, STABLE)
        if stable_requests < max(analysis.min_requests, 1):
            return _result("successRate", INCONCLUSIVE, value, None,
                           f"the stable answered {stable_requests:.0f} requests in {window(analysis)}, fewer than "
                           f"minRequests {analysis.min_requests}: nothing to compare with", now)
        stable = rate(STABLE)
        bounds.append(stable - rule.max_degradation)
        stable_note = f" (stable {_fmt(stable)} - {_fmt(rule.max_degradation)})"
    bound = max(bounds)
    verdict = SUCCESSFUL if value >= bound else FAILED
    words = "at least" if verdict == SUCCESSFUL else "below"
    return _result("successRate", verdict, value, f">= {_fmt(bound)}",
                   f"success rate {_fmt(value)} is {words} {_fmt(bound)}{stable_note}", now)


def _latency(analysis: CanaryAnalysis, answers: dict[str, Answer], now: datetime) -> dict:
    rule = analysis.latency
    assert rule is not None
    answer = answers["latency"]
    what = f"p{rule.quantile * 100:g} latency"
    if answer.error is not None:
        return _result("latency", INCONCLUSIVE, None, None, f"Prometheus: {answer.error}", now)
    value = answer.values.get(CANARY)
    if value is None or math.isnan(value):
        return _result("latency", INCONCLUSIVE, None, None, f"no {what} data for the canary", now)
    bounds = []
    if rule.max_value is not None:
        bounds.append(latency_seconds(rule.max_value))
    stable_note = ""
    if rule.max_increase is not None:
        stable = answer.values.get(STABLE)
        if stable is None or math.isnan(stable) or _requests(answers, STABLE) < max(analysis.min_requests, 1):
            if bounds and value > bounds[0]:
                return _result("latency", FAILED, value, f"<= {_fmt(bounds[0])}",
                               f"{what} {_fmt(value)}s is above the maximum {_fmt(bounds[0])}s", now)
            return _result("latency", INCONCLUSIVE, value, None,
                           f"no {what} of the stable with minRequests {analysis.min_requests} to compare with", now)
        bounds.append(stable * (1 + rule.max_increase))
        stable_note = f" (stable {_fmt(stable)}s x {_fmt(1 + rule.max_increase)})"
    bound = min(bounds)
    verdict = SUCCESSFUL if value <= bound else FAILED
    words = "within" if verdict == SUCCESSFUL else "above"
    return _result("latency", verdict, value, f"<= {_fmt(bound)}",
                   f"{what} {_fmt(value)}s is {words} {_fmt(bound)}s{stable_note}", now)


def _custom(analysis: CanaryAnalysis, index: int, answers: dict[str, Answer], now: datetime) -> dict:
    check = analysis.checks[index]
    answer = answers[f"check:{check.name}"]
    limits = [f">= {_fmt(check.min_value)}"] if check.min_value is not None else []
    limits += [f"<= {_fmt(check.max_value)}"] if check.max_value is not None else []
    threshold = ", ".join(limits)
    if answer.error is not None:
        return _result(check.name, INCONCLUSIVE, None, threshold, f"Prometheus: {answer.error}", now)
    value = next(iter(answer.values.values()), None)
    if value is None or math.isnan(value):
        return _result(check.name, INCONCLUSIVE, None, threshold, "the query returned no data", now)
    low = check.min_value is not None and value < check.min_value
    high = check.max_value is not None and value > check.max_value
    if low or high:
        return _result(check.name, FAILED, value, threshold, f"{check.name} {_fmt(value)} is not {threshold}", now)
    return _result(check.name, SUCCESSFUL, value, threshold, f"{check.name} {_fmt(value)} is {threshold}", now)


def check_names(analysis: CanaryAnalysis) -> list[str]:
    names = [name for name, rule in zip(BUILTIN, (analysis.success_rate, analysis.latency)) if rule is not None]
    return (names + [check.name for check in analysis.checks]
            + ([predictiondrift.NAME] if analysis.prediction_drift else [])
            + ([accuracy.NAME] if analysis.accuracy else []))


def judge(analysis: CanaryAnalysis, answers: dict[str, Answer], now: datetime,
          labelled: accuracy.Labelled | None = None,
          predicted: predictiondrift.Predictions | None = None) -> list[dict]:
    """Each check's result for one interval (status.canary.analysis.checks items), in the spec's order, then the
    model's: predictionDrift (from `predicted`) and accuracy (from `labelled`), read from the prediction log."""
    requests = answers.get("requests") or Answer(error="no answer")
    if requests.error is not None:
        return [_result(name, INCONCLUSIVE, None, None, f"Prometheus: {requests.error}", now)
                for name in check_names(analysis)]
    canary_requests = _requests(answers, CANARY)
    if canary_requests < max(analysis.min_requests, 1):
        why = (f"the canary answered {canary_requests:.0f} requests in {window(analysis)}, fewer than minRequests "
               f"{analysis.min_requests}")
        return [_result(name, INCONCLUSIVE, None, None, why, now) for name in check_names(analysis)]
    results = []
    if analysis.success_rate is not None:
        results.append(_success_rate(analysis, answers, now))
    if analysis.latency is not None:
        results.append(_latency(analysis, answers, now))
    results += [_custom(analysis, i, answers, now) for i in range(len(analysis.checks))]
    if analysis.prediction_drift is not None:
        results.append(predictiondrift.judge(analysis.prediction_drift,
                                             predicted or predictiondrift.Predictions(error="not read"),
                                             analysis.min_requests, window(analysis), now))
    if analysis.accuracy is not None:
        results.append(accuracy.judge(analysis.accuracy, labelled or accuracy.Labelled(error="not read"),
                                      window(analysis), now))
    return results


def verdict(checks: list[dict]) -> str:
    verdicts = {check["verdict"] for check in checks}
    return FAILED if FAILED in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts or not checks else SUCCESSFUL


# --- intervals adding up ------------------------------------------------------------------------------------------


def fold(prev: dict | None, digest: str, checks: list[dict], now: datetime) -> dict:
    """status.canary.analysis after one more interval; counts start afresh for another canary (digest)."""
    prev = prev if prev and prev.get("canary") == digest else {}
    result = verdict(checks)
    return {
        "canary": digest,
        "verdict": result,
        "lastTime": format_time(now),
        "failed": int(prev.get("failed") or 0) + (result == FAILED),
        "inconclusive": int(prev.get("inconclusive") or 0) + (result == INCONCLUSIVE),
        "consecutiveInconclusive": int(prev.get("consecutiveInconclusive") or 0) + 1 if result == INCONCLUSIVE else 0,
        "checks": checks,
    }


def due_at(analysis: CanaryAnalysis, status: dict | None, step_start: datetime | None) -> datetime | None:
    """When the next analysis of the running step is due: an interval after the step started (so each step's
    first window is its own), and an interval after the last one. None while the step has not started."""
    if step_start is None:
        return None
    every = timedelta(seconds=interval_seconds(analysis))
    last = parse_time((status or {}).get("lastTime"))
    return max(step_start + every, last + every) if last is not None else step_start + every


def passed(analysis: CanaryAnalysis, status: dict | None, step_start: datetime) -> bool:
    """The step's last analysis succeeded, and it measured this step only (its window began at or after the
    step's start)."""
    last = parse_time((status or {}).get("lastTime"))
    return (last is not None and (status or {}).get("verdict") == SUCCESSFUL
            and last - timedelta(seconds=interval_seconds(analysis)) >= step_start)


def failed_checks(status: dict) -> str:
    """The failed checks of the last interval with value and threshold, for a condition or an event."""
    failed = [c for c in status.get("checks") or [] if c.get("verdict") == FAILED]
    return "; ".join(f"{c['name']}: {c.get('message')}" for c in failed) or "no failed check recorded"


def inconclusive_checks(status: dict) -> str:
    odd = [c for c in status.get("checks") or [] if c.get("verdict") == INCONCLUSIVE]
    reasons = dict.fromkeys(c.get("message") for c in odd)  # one reason often covers every check
    return "; ".join(str(r) for r in reasons)


def prometheus_url(analysis: CanaryAnalysis, default: str) -> str:
    return analysis.prometheus_url or default


def settings_problems(spec: ModelDeploymentSpec, default_url: str) -> list[str]:
    """An analysis with nowhere to ask: no prometheusUrl, and the operator runs without --prometheus-url."""
    canary = spec.rollout.canary if spec.rollout else None
    if canary is None or canary.analysis is None or prometheus_url(canary.analysis, default_url):
        return []
    return ["spec.rollout.canary.analysis.prometheusUrl: required, because the operator runs without "
            "--prometheus-url (MLOPS_PROMETHEUS_URL)"]
