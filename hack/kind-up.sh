#!/usr/bin/env bash
# kind path for machines with Docker: a kind cluster, the operator's image built and loaded into it, the chart
# installed (cluster-wide, one replica). Cannot run on machines without a container engine: use `make run` there.
#   KIND_CLUSTER (mlops)  IMAGE_TAG (dev)  HELM (helm on PATH, else the one `make deps` caches)
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${KIND_CLUSTER:-mlops}
TAG=${IMAGE_TAG:-dev}
HELM=${HELM:-$(command -v helm || echo "${MLOPS_CACHE_DIR:-$HOME/.cache/mlops-operator}/helm-3.6.2/helm")}
if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
  echo "make kind-up needs a running Docker engine (kind runs nodes as containers); none here." >&2
  echo "Use 'make run' (a local control plane without containers) or KUBECONFIG=... make run." >&2
  exit 1
fi
for tool in kind kubectl "$HELM"; do
  command -v "$tool" >/dev/null || { echo "make kind-up needs $tool" >&2; exit 1; }
done
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER"
docker build -t "mlops-operator:$TAG" .
kind load docker-image "mlops-operator:$TAG" --name "$CLUSTER"
# The chart's crds/ are installed when absent; apply them so an existing cluster gets the current schemas too.
kubectl --context "kind-$CLUSTER" apply -f charts/mlops-operator/crds/
"$HELM" upgrade --install mlops-operator charts/mlops-operator --kube-context "kind-$CLUSTER" \
  --namespace mlops-system --create-namespace \
  --set image.repository=mlops-operator --set image.tag="$TAG" --set image.pullPolicy=Never --wait --timeout 5m
kubectl --context "kind-$CLUSTER" -n mlops-system rollout status deployment/mlops-operator --timeout 2m
