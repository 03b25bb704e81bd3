# costeff's image: every command, CPU wheels only; the long-lived ones (reap --watch, drift watch,
# ramp watch) run from it in deploy/kubernetes. Build from the repository root:
#
#   docker build --build-arg COSTEFF_VERSION=0.1.0 -t costeff:0.1.0 .
#   docker run --rm costeff:0.1.0            # the smoke command: costeff --help
#
# Build arguments: COSTEFF_VERSION (required; must equal pyproject.toml's version), EXTRAS
# (default cpu,openvino), TORCH_INDEX_URL (default PyTorch's CPU index), PYTHON_IMAGE.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ARG COSTEFF_VERSION
ARG EXTRAS=cpu,openvino
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
# An image labelled with one version must contain that version: fail the build otherwise.
RUN python -c 'import sys, tomllib; want = sys.argv[1]; have = tomllib.load(open("pyproject.toml", "rb"))["project"]["version"]; sys.exit(None if want == have else f"COSTEFF_VERSION={want!r} but pyproject.toml says {have!r}; pass --build-arg COSTEFF_VERSION={have}")' "${COSTEFF_VERSION}"
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the CPU index only: with it installed, nothing later can resolve a CUDA build
# (the project pins torch==2.13.0, which the +cpu wheel satisfies).
RUN pip install --upgrade pip \
 && pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0
COPY README.md ./
COPY src ./src
RUN pip install ".[${EXTRAS}]" \
 && costeff --version \
 && python -c 'import torch; assert torch.version.cuda is None, torch.version.cuda'

FROM ${PYTHON_IMAGE}
ARG COSTEFF_VERSION
LABEL org.opencontainers.image.title="costeff" \
      org.opencontainers.image.description="Serve a reinforcement-learning trading policy cheaply without changing what it decides." \
      org.opencontainers.image.version="${COSTEFF_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The venv only: no compilers, no build context, no pip cache in the final image.
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
RUN groupadd --system --gid 10001 costeff \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin costeff
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["costeff"]
CMD ["--help"]
