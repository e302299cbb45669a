# arting-2api in a container: the daemon in a venv, run as a non-root user, data in /data.
#
#   docker build -t arting-2api .
#   docker run -d -p 127.0.0.1:8090:8090 -e ARTING_PUBLISHED_HOST=127.0.0.1 \
#       -v arting-data:/data arting-2api --sandbox
#
# The build needs BuildKit (the default since Docker 23; with Docker 20.10 and Debian's
# docker-compose 1.29, set DOCKER_BUILDKIT=1). Behind a proxy that intercepts TLS, hand
# its CA bundle to pip as a secret: it is used for this build only and not kept in the image.
#
#   docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t arting-2api .
#
# Any Debian-like base with Python >= 3.11 and its venv module works: --build-arg BASE=...

ARG BASE=python:3.12-slim

FROM ${BASE} AS build
WORKDIR /src
# The dependencies first, in a layer of their own: a change to the code alone reuses it.
COPY pyproject.toml ./
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python3 -m venv /opt/arting \
    && python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
print("\n".join(p["project"]["dependencies"] + p["build-system"]["requires"]))' \
        > requirements.txt \
    && /opt/arting/bin/pip install --no-cache-dir --disable-pip-version-check --quiet \
        --requirement requirements.txt
COPY README.md ./
COPY arting_daemon ./arting_daemon
# pip and setuptools are needed to install, not to run: the image gets the venv without them.
RUN /opt/arting/bin/pip install --no-cache-dir --disable-pip-version-check --quiet \
        --no-deps --no-build-isolation . \
    && /opt/arting/bin/pip uninstall --yes --quiet pip setuptools

FROM ${BASE}
RUN groupadd --gid 10001 arting \
    && useradd --uid 10001 --gid arting --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin arting \
    && mkdir /data /config && chown arting:arting /data
COPY --from=build /opt/arting /opt/arting
# Inside the container the daemon listens on all interfaces: who can reach it is decided
# where the port is published. Without API_MASTER_KEY it starts only when told that this
# is the host's loopback (ARTING_PUBLISHED_HOST=127.0.0.1; compose.yaml does that).
ENV PATH=/opt/arting/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ARTING_HOST=0.0.0.0 \
    ARTING_PORT=8090 \
    ARTING_DATA_DIR=/data \
    ARTING_LOG_STREAM=stdout
USER 10001:10001
# A mounted /config/arting.toml is read at start (the environment wins over it).
WORKDIR /config
VOLUME /data
EXPOSE 8090
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-m", "arting_daemon.healthcheck"]
# Exec form: the daemon is PID 1 and gets SIGTERM itself (graceful: see shutdown_grace).
ENTRYPOINT ["arting-daemon"]
