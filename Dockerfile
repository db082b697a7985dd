# The one image of mlops-operator: the operator (`mlops-operator run`), the serving pods' model fetcher
# (`mlops-operator fetch-model`) and the drift runner (`mlops-operator drift-check`) all run from it.
#
#   docker build -t mlops-operator:0.1.0 .
#
# Base images are named without a registry: your builder resolves them (its default or a mirror you configure).
ARG PYTHON_VERSION=3.11

# --- build: the package and its dependencies (with the object-store backends) into a virtualenv -------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/mlops
WORKDIR /src
# Only what the package needs: the metadata first, so the dependency layer survives code edits.
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY operator/ operator/
RUN /opt/mlops/bin/pip install -c requirements/constraints.txt '.[storage]' \
    && /opt/mlops/bin/mlops-operator --version

# --- runtime: the virtualenv on a clean base, a non-root user, no build tools --------------------------------
FROM python:${PYTHON_VERSION}-slim
RUN groupadd --gid 1000 mlops \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin mlops
COPY --from=build /opt/mlops /opt/mlops
# HOME=/tmp: fsspec, huggingface_hub and friends write their caches under $HOME; the chart mounts an emptyDir
# at /tmp because the root filesystem is read-only. Bytecode is compiled at install time, never at run time; the
# drift checks' compiled loops (numba) are compiled on first use into NUMBA_CACHE_DIR.
ENV PATH=/opt/mlops/bin:$PATH \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/tmp/numba
# Numeric, so Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 1000:1000
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["mlops-operator"]
CMD ["run", "--standalone", "--all-namespaces", "--metrics-bind-address=0.0.0.0:8080", "--liveness=http://0.0.0.0:8081/healthz"]
