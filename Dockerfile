# One image for the Katib trial (`python -m trial ...`) and for every KFP
# pipeline step (kfp is installed; components import the project from /app).
#
#   docker build -t "$(scripts/image-tag)" .                  # CPU (tensorflow-cpu): katib-digits:<version>
#   docker build --build-arg VARIANT=gpu -t katib-digits:gpu .   # CUDA wheels of the same TensorFlow
#
# Build arguments: PYTHON_IMAGE, the base (any Debian with python3.11 as `python`;
# `make test-containers` builds on a debootstrap bookworm, since it can pull no
# registry image), and PIP_CERT, a CA bundle for pip inside the build where a
# proxy re-signs TLS (mount it with the build's -v).
# tests/project/test_dockerfile.py checks its rules and dry-builds it with stand-ins for
# pip; tests/containers/ builds it with podman and runs the trial, the linter and the pipeline in it.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: a virtualenv with the pinned dependencies -------------------------------
FROM ${PYTHON_IMAGE} AS build
ARG VARIANT=cpu
ARG PIP_CERT=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml requirements-nodeps.txt README.md ./
# Same two steps as `make setup`: the pinned dependencies (read from pyproject.toml, so
# this layer is rebuilt only when they change, not when the code does), then
# kubeflow-katib without its stale protobuf<5 pin (see requirements-nodeps.txt).
# GPU: swap tensorflow-cpu for the same TensorFlow version with its CUDA wheels.
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
 && python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
      > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && pip install --no-cache-dir --no-deps -r requirements-nodeps.txt \
 && if [ "$VARIANT" = "gpu" ]; then \
      tf_version="$(pip show tensorflow-cpu | sed -n 's/^Version: //p')" \
      && pip uninstall --yes tensorflow-cpu \
      && pip install --no-cache-dir "tensorflow[and-cuda]==${tf_version}"; \
    elif [ "$VARIANT" != "cpu" ]; then echo "VARIANT must be cpu or gpu, not $VARIANT" >&2; exit 1; fi \
 && python -c "import kfp, kfp.kubernetes, kubernetes, kubeflow.katib.katib_api_pb2_grpc, grpc_health.v1.health, optuna, tensorflow"
COPY trial/ trial/
COPY pipeline/ pipeline/
# The project itself (the `katib-digits` command); its dependencies are all in already.
RUN pip install --no-cache-dir --no-deps .

# --- final: the venv, the sources and the data sample; no compilers, no caches ----------
FROM ${PYTHON_IMAGE}
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="katib-digits" \
      org.opencontainers.image.description="Kaggle digit-recognizer CNN trial and Kubeflow pipeline steps (${VARIANT})" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 1000 app \
 && useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
# The source layout is kept (/app/trial, /app/pipeline, /app/data/sample, /app/experiments):
# the trial's default --data and the pipeline's default paths are resolved relative to it.
# PYTHONPATH=/app makes these sources the ones imported, whatever the working directory.
WORKDIR /app
COPY pyproject.toml ./
COPY trial/ trial/
COPY pipeline/ pipeline/
COPY experiments/ experiments/
COPY data/sample/ data/sample/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    HOME=/home/app
# Numeric, so a pod's runAsNonRoot can verify it.
USER 1000:1000
# No ENTRYPOINT: Katib's trial template and KFP set the command.
CMD ["python", "-m", "trial", "--help"]
