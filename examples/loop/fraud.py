"""The fraud model of the closed loop (`make demo`, docs/loop.md): synthetic card payments, the trainer and the
traffic generator in one file, so a pod needs only this file (a ConfigMap key) and scikit-learn, pyarrow, fsspec.

    python fraud.py train      # a TrainingJob's worker
    python fraud.py traffic    # the traffic pod

Payments have four features (FEATURES); whether one is fraud follows one fixed rule with noise (`fraud_rule`).
ERA 0 is the world the first model is trained on; in ERA 1 amounts are larger, distances longer and merchants
riskier (the rule stays): the inputs drift, which a DriftMonitor sees, and a model retrained on ERA 1 data fits
it better.

train: writes `model.joblib` (a scikit-learn classifier; MLServer's sklearn runtime answers its `predict`) and
`reference.parquet` (the rows it was trained on, with their labels: a DriftMonitor's `reference.fromModel`) into
OUTPUT_MODEL_URI. Its data: with DATASET_URI, a prediction log of the inference agent, the rows of the last
WINDOW_SECONDS joined by request id with the labels posted to /v1/feedback (what the model really saw, labelled);
without it, ROWS rows generated for TRAIN_ERA. SHUFFLE_LABELS=1 shuffles the labels first: a bug on purpose,
for a model that must not be promoted.

traffic: sends one payment at a time to TARGET (Open Inference Protocol v2, model MODEL), RATE a second, each
with its own X-Request-Id, and posts its true label to TARGET/v1/feedback once answered. Every request opens a
new connection, so kube-proxy spreads them over the serving pods as it does for many clients. Prints a line of
counts every 10 seconds. FLIP_LABELS=1 posts the opposite label: the world's rule turned around while the payments
look the same (concept drift), which only a check on the labels can see.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

import numpy as np

FEATURES = ["amount", "distance_km", "hour_of_day", "merchant_risk"]
ERAS = {  # amount: lognormal (mean, sigma) of the log; distance: exponential scale; merchant risk: beta (a, b)
    0: {"amount": (3.5, 0.8), "distance": 8.0, "risk": (2.0, 6.0)},
    1: {"amount": (4.4, 0.7), "distance": 30.0, "risk": (3.0, 3.0)},
}


def payments(era: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` payments of `era` (rows of FEATURES) and whether each is fraud."""
    p = ERAS[era]
    x = np.column_stack([
        np.round(rng.lognormal(*p["amount"], n), 2),
        np.round(rng.exponential(p["distance"], n), 1),
        rng.integers(0, 24, n).astype(float),
        np.round(rng.beta(*p["risk"], n), 3),
    ])
    return x, fraud_rule(x, rng)


def fraud_rule(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The world's rule, the same in every era: large, far, night-time payments at risky merchants are fraud."""
    night = (x[:, 2] < 6).astype(float)
    logit = 2.5 * (-6.0 + 1.1 * (np.log(x[:, 0]) - 3.5) + 0.05 * x[:, 1] + 5.0 * x[:, 3] + 1.0 * night)
    return (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(int)


# --- train --------------------------------------------------------------------------------------------------------


def logged_rows(uri: str, window_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """The prediction log's rows of the last `window_seconds` that have a feedback label: (features, labels)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(uri)
    since = int((time.time() - window_seconds) * 1e6)

    def table(path: str, columns: list[str], ignore: list[str]):
        # no partitioning: the rows carry their own timestamp (and a feature may be named like a partition key)
        data = ds.dataset(path, format="parquet", filesystem=fs, ignore_prefixes=ignore)
        found = data.to_table(columns=columns + ["timestamp"])
        return found.filter(pc.greater_equal(found["timestamp"].cast("int64"), since))

    predictions = table(root, ["request_id", *FEATURES], ["feedback", ".", "_"])
    labels = table(root.rstrip("/") + "/feedback", ["request_id", "label"], [".", "_"])
    joined = predictions.join(labels.select(["request_id", "label"]), "request_id", join_type="inner")
    x = np.column_stack([joined[name].to_numpy(zero_copy_only=False).astype(float) for name in FEATURES]) \
        if joined.num_rows else np.empty((0, len(FEATURES)))
    return x, joined["label"].to_numpy(zero_copy_only=False).astype(int)


def write(uri: str, name: str, payload: bytes) -> None:
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    fs.makedirs(root, exist_ok=True)
    with fs.open(root.rstrip("/") + "/" + name, "wb") as out:
        out.write(payload)


def train() -> int:
    import joblib
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split

    out = os.environ["OUTPUT_MODEL_URI"]
    seed = int(os.environ.get("SEED", "0"))
    rng = np.random.default_rng(seed)
    if os.environ.get("DATASET_URI"):
        window = float(os.environ.get("WINDOW_SECONDS", "60"))
        x, y = logged_rows(os.environ["DATASET_URI"], window)
        source = f"{len(y)} labelled rows of the last {window:g} s of {os.environ['DATASET_URI']}"
        least = int(os.environ.get("MIN_ROWS", "200"))
        if len(y) < least:
            print(f"fraud train: {source}, fewer than MIN_ROWS {least}: not enough to train on", flush=True)
            return 1
    else:
        era = int(os.environ.get("TRAIN_ERA", "0"))
        x, y = payments(era, int(os.environ.get("ROWS", "4000")), rng)
        source = f"{len(y)} generated rows of era {era}"
    if os.environ.get("SHUFFLE_LABELS") == "1":
        y = rng.permutation(y)
        source += ", labels shuffled on purpose"
    x_fit, x_test, y_fit, y_test = train_test_split(x, y, test_size=0.25, random_state=seed)
    model = HistGradientBoostingClassifier(max_iter=60, random_state=seed).fit(x_fit, y_fit)
    held_out = float((model.predict(x_test) == y_test).mean())
    model.fit(x, y)  # the served model learns from every row

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    write(out, "model.joblib", buffer.getvalue())
    reference = pa.table({**{name: x[:, i] for i, name in enumerate(FEATURES)}, "label": y})
    buffer = io.BytesIO()
    pq.write_table(reference, buffer)
    write(out, "reference.parquet", buffer.getvalue())
    print(f"fraud train: {source}; fraud share {y.mean():.3f}; held-out accuracy {held_out:.3f}; "
          f"wrote model.joblib and reference.parquet to {out}", flush=True)
    return 0


# --- traffic ------------------------------------------------------------------------------------------------------


def post(url: str, body: dict, request_id: str | None = None, timeout: float = 5) -> tuple[int, dict | None]:
    headers = {"Content-Type": "application/json", **({"X-Request-Id": request_id} if request_id else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, None
    except (OSError, ValueError):
        return 0, None  # not reachable now (a pod rolling, the Service's endpoints changing)


def traffic() -> int:
    target = os.environ["TARGET"].rstrip("/")
    model = os.environ.get("MODEL", "fraud")
    era, rate = int(os.environ.get("ERA", "0")), float(os.environ.get("RATE", "20"))
    flip = os.environ.get("FLIP_LABELS") == "1"
    rng = np.random.default_rng(int(os.environ.get("SEED", "1")) * 1000 + era)
    counts = {"sent": 0, "answered": 0, "failed": 0, "fraud": 0, "labelled": 0}
    print(f"fraud traffic: era {era}, {rate:g}/s to {target}/v2/models/{model}/infer"
          + (", labels flipped" if flip else ""), flush=True)
    report, tick = time.monotonic() + 10, time.monotonic()
    while True:
        x, y = payments(era, 1, rng)
        request_id = uuid.uuid4().hex
        body = {"inputs": [{"name": "payment", "shape": [1, len(FEATURES)], "datatype": "FP64",
                            "data": x.tolist()}]}
        status, answer = post(f"{target}/v2/models/{model}/infer", body, request_id)
        counts["sent"] += 1
        if status == 200 and answer:
            counts["answered"] += 1
            counts["fraud"] += int(answer["outputs"][0]["data"][0])
            fed, _ = post(f"{target}/v1/feedback", {"request_id": request_id,
                                                         "label": 1 - int(y[0]) if flip else int(y[0])})
            counts["labelled"] += fed in (200, 202, 204)
        else:
            counts["failed"] += 1
        if time.monotonic() >= report:
            print("fraud traffic: era {era}, sent {sent}, answered {answered}, failed {failed}, labelled {labelled}, "
                  "predicted fraud {fraud}".format(era=era, **counts), flush=True)
            report += 10
        tick += 1 / rate
        time.sleep(max(0.0, tick - time.monotonic()))


if __name__ == "__main__":
    command = sys.argv[-1] if len(sys.argv) > 1 else ""
    if command not in ("train", "traffic"):
        sys.exit("usage: fraud.py train|traffic")
    sys.exit(train() if command == "train" else traffic())
