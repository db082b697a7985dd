#!/usr/bin/env bash
# kind path for machines with Docker: a kind cluster, the operator's image loaded into it, the chart installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
  echo "make kind-up needs a running Docker engine (kind runs nodes as containers); none here." >&2
  echo "Use 'make run' (a local control plane without containers) or KUBECONFIG=... make run." >&2
  exit 1
fi
if [ ! -f Dockerfile ] || [ ! -d charts/mlops-operator ]; then
  echo "make kind-up needs the operator image (Dockerfile) and the Helm chart (charts/mlops-operator)," >&2
  echo "which are not in this version yet. Until then: KUBECONFIG=<your kind cluster> make run." >&2
  exit 1
fi
command -v kind >/dev/null || { echo "install kind first (a single static binary)" >&2; exit 1; }
kind create cluster --name mlops 2>/dev/null || true
docker build -t mlops-operator:dev .
kind load docker-image mlops-operator:dev --name mlops
helm upgrade --install mlops-operator charts/mlops-operator --namespace mlops-system --create-namespace \
  --set image.repository=mlops-operator --set image.tag=dev
