# blackwell-exporter: the exporter daemon as a sidecar image.
#
#   docker build -t blackwell-exporter .
#   docker run --read-only --tmpfs /tmp --gpus all -p 9402:9402 blackwell-exporter --simulate hgx-b200
#
# Runs as an unprivileged numeric user (so Kubernetes runAsNonRoot can verify it) and writes
# nothing outside /tmp: bytecode is compiled at build time, HOME points at /tmp, and the exporter
# itself keeps all state in memory. Settings come from flags after the image name, a mounted
# config file (--config), or BLACKWELL_EXPORTER_* variables.

FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# gcc builds the CUPTI injection library (native/, headers from PyPI wheels: setup.py); it lands at
# /opt/blackwell-exporter/libblackwell_inject.so in the final image, for CUDA_INJECTION64_PATH on
# serving containers that mount or copy it (docs/injection.md).
RUN apt-get update -q && apt-get install -y -q --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml setup.py README.md ./
COPY native/ native/
COPY exporter/ exporter/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-compile . \
 && /opt/venv/bin/python -m compileall -q /opt/venv \
 && mkdir -p /opt/blackwell-exporter \
 && cp "$(/opt/venv/bin/blackwell-exporter inject-path)" /opt/blackwell-exporter/libblackwell_inject.so \
 && echo "injection library: /opt/blackwell-exporter/libblackwell_inject.so"

FROM python:3.12-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/blackwell-exporter /opt/blackwell-exporter
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin exporter
USER 10001:10001
WORKDIR /tmp
EXPOSE 9402
# Liveness only (/healthz needs no credentials). Reads the port from BLACKWELL_EXPORTER_LISTEN
# (default :9402); tries plain HTTP, then HTTPS without verifying the certificate, since it only
# talks to this container. A web config that requires client certificates fails this check:
# use VerifyClientCertIfGiven or override HEALTHCHECK.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, ssl, sys, urllib.request\nhost, _, port = os.environ.get('BLACKWELL_EXPORTER_LISTEN', ':9402').rpartition(':')\nhost = host.strip('[]')\nhost = '127.0.0.1' if host in ('', '0.0.0.0', '::') else host\nhost = f'[{host}]' if ':' in host else host\nfor scheme in ('http', 'https'):\n    try:\n        ok = urllib.request.urlopen(f'{scheme}://{host}:{port}/healthz', timeout=4, context=ssl._create_unverified_context()).status == 200\n    except OSError:\n        continue\n    sys.exit(0 if ok else 1)\nsys.exit(1)\n"]
ENTRYPOINT ["blackwell-exporter", "run"]
