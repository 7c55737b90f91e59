# cycletime-collector image: `make image` (docker, podman or buildah; README "Building and pushing the image").
# Only the product is copied in: no sandbox (a development tool, its own distribution), tests,
# benchmarks, scripts or docs.
# Runs as the non-root uid/gid 10001 (the Helm chart's securityContext) and works with a read-only root
# filesystem: the store lives in /var/lib/cycletime (a volume), temporary files in /tmp.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY collector ./collector
COPY exporters ./exporters
RUN pip install ".[postgres]" \
 && rm -rf /src \
 && groupadd --system --gid 10001 cycletime \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/cycletime --no-create-home \
      --shell /usr/sbin/nologin cycletime \
 && mkdir -p /var/lib/cycletime /etc/cycletime \
 && chown 10001:10001 /var/lib/cycletime

USER 10001:10001
WORKDIR /var/lib/cycletime
EXPOSE 9184
HEALTHCHECK --interval=30s --timeout=5s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9184/healthz', timeout=4)"]
ENTRYPOINT ["cycletime"]
CMD ["serve", "--config", "/etc/cycletime/config.yaml"]
