# wolkvox-exporter container image.
#
#   docker build -t wolkvox-exporter .
#   docker run -p 9856:9856 wolkvox-exporter --demo
#   docker run -p 9856:9856 -e WOLKVOX_TOKEN -v $PWD/config.yaml:/etc/wolkvox-exporter/config.yaml:ro \
#       -v wolkvox-state:/var/lib/wolkvox-exporter wolkvox-exporter
#
# The config is read from /etc/wolkvox-exporter/config.yaml; point state.path at
# /var/lib/wolkvox-exporter/state.json (a volume) so counters survive container restarts.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin wolkvox \
    && mkdir -p /etc/wolkvox-exporter /var/lib/wolkvox-exporter \
    && chown 10001 /var/lib/wolkvox-exporter
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config.example.yaml /etc/wolkvox-exporter/config.example.yaml
USER 10001
VOLUME /var/lib/wolkvox-exporter
EXPOSE 9856
# Liveness from inside the container; the port follows WOLKVOX_EXPORTER_LISTEN_ADDRESS if set
# (set it, rather than web.listen_address in the file, when changing the port in a container).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('WOLKVOX_EXPORTER_LISTEN_ADDRESS', ':9856').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/-/healthy', timeout=4)"]
ENTRYPOINT ["wolkvox-exporter"]
CMD ["--config", "/etc/wolkvox-exporter/config.yaml"]
