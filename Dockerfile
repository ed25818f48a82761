# wolkvox-exporter container image.
#
#   docker build -t wolkvox-exporter .
#   docker run -p 9856:9856 wolkvox-exporter --demo
#   docker run -p 9856:9856 -e WOLKVOX_TOKEN -v $PWD/config.yaml:/etc/wolkvox-exporter/config.yaml:ro \
#       -v wolkvox-state:/var/lib/wolkvox-exporter wolkvox-exporter
#
# The config is read from /etc/wolkvox-exporter/config.yaml; point state.path at
# /var/lib/wolkvox-exporter/state.json (a volume) so counters survive container restarts.
# CI builds and runs this file with buildah, on a local stand-in for the base image
# (tests/test_image.py, deploy/image/local-base.sh): --build-arg BASE_IMAGE=... substitutes it.

# A patch release and a Debian release, both pinned: a rebuild gets the same Python.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
# A virtual environment, copied whole into the final stage: the same path works on the official
# image and on Debian's Python, where installing into the system is refused (PEP 668).
RUN python3 -m venv /opt/wolkvox-exporter \
    && /opt/wolkvox-exporter/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="wolkvox-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Wolkvox contact-center routing and chatbot interactions (reports API diagram_9)" \
      org.opencontainers.image.source="https://github.com/wolkvox-exporter/wolkvox-exporter" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/wolkvox-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin wolkvox \
    && mkdir -p /etc/wolkvox-exporter /var/lib/wolkvox-exporter \
    && chown 10001 /var/lib/wolkvox-exporter
COPY --from=build /opt/wolkvox-exporter /opt/wolkvox-exporter
COPY config.example.yaml /etc/wolkvox-exporter/config.example.yaml
USER 10001
VOLUME /var/lib/wolkvox-exporter
EXPOSE 9856
# Liveness from inside the container. The probe finds the address as the exporter does
# (WOLKVOX_EXPORTER_LISTEN_ADDRESS, else web.listen_address of the config, else :9856), host
# included, and takes a 401 (basic auth) or a TLS answer as alive, so it needs no credentials.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["wolkvox-exporter", "healthcheck", "--config", "/etc/wolkvox-exporter/config.yaml"]
ENTRYPOINT ["wolkvox-exporter"]
CMD ["--config", "/etc/wolkvox-exporter/config.yaml"]
