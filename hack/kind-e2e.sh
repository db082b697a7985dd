#!/usr/bin/env bash
# On a kind cluster made by kind-up.sh: apply the examples and wait for each to reach its expected state.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/kind-up.sh
kubectl apply -f examples/quickstart.yaml
kubectl wait --for=condition=Ready --timeout=300s modeldeployment --all
