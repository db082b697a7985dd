#!/usr/bin/env bash
# On the kind cluster of kind-up.sh, with the operator running in-cluster from its real image under the chart's
# RBAC: apply every example and wait for the state a cluster without GPUs and without the examples' storage
# reaches. The examples' URIs are placeholders and kind nodes have no GPUs, so ModelDeployments end Ready=False
# with the true reason (ModelFetchFailed, Unschedulable): what is checked is that the operator reconciles each one,
# writes status, makes the drift runner's account, and is never refused by the API server.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/kind-up.sh
CTX="kind-${KIND_CLUSTER:-mlops}"
NS=mlops-e2e
k() { kubectl --context "$CTX" "$@"; }
k create namespace "$NS" --dry-run=client -o yaml | k apply -f -
k -n "$NS" create secret generic s3-credentials --from-literal=AWS_ACCESS_KEY_ID=none --dry-run=client -o yaml | k apply -f -
k -n "$NS" create secret generic hf-token --from-literal=HF_TOKEN=none --dry-run=client -o yaml | k apply -f -
for example in examples/*.yaml; do k -n "$NS" apply -f "$example"; done
k -n "$NS" wait --for=condition=Ready=False --timeout=300s modeldeployment --all
k -n "$NS" wait --for=condition=Ready=False --timeout=120s driftmonitor/fraud   # AwaitingFirstCheck
k -n "$NS" get role/fraud-drift rolebinding/fraud-drift serviceaccount/fraud-drift
k -n "$NS" get cronjob fraud-drift
k get mlops -n "$NS"
if k -n mlops-system logs deployment/mlops-operator | grep -i forbidden; then
  echo "the operator was refused by the API server (see above): the chart's RBAC lacks something" >&2
  exit 1
fi
echo "kind e2e: every example reconciled under the chart's RBAC"
