# arting-2api in a container: the daemon in a venv, run as a non-root user, data in /data.
#
#   docker build -t arting-2api .
#   docker run -d -p 127.0.0.1:8090:8090 -e ARTING_PUBLISHED_HOST=127.0.0.1 \
#       -v arting-data:/data arting-2api --sandbox
#
# The build needs BuildKit (the default since Docker 23; with Docker 20.10 and Debian's
# docker-compose 1.29, set DOCKER_BUILDKIT=1), and reaches PyPI, the npm registry (for
# Swagger UI's files) and the base's Debian mirror. Behind a proxy that intercepts TLS,
# hand its CA bundle to the build as a secret: it is used for this build only and not
# kept in the image.
#
#   docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t arting-2api .
#
# Any Debian-like base with Python >= 3.11 and its venv module works: --build-arg BASE=...
#
# Two stages: the first installs and trims, the image gets only the venv it made, which
# holds what the daemon runs and nothing it does not: no pip or setuptools, no caches,
# no tests or sources of compiled modules, and those modules without their debugging
# symbols. README.md ("Docker") says what each dependency costs.

ARG BASE=python:3.12-slim

FROM ${BASE} AS build
# strip (binutils) takes the debugging symbols out of compiled modules (uvloop's alone
# ships 11 MB of them); it stays in this stage.
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends binutils >/dev/null \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Swagger UI's files for /docs, from npm, checked against the hash pinned in the script.
COPY arting_daemon/swagger_ui.py ./arting_daemon/
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && python3 arting_daemon/swagger_ui.py
# The dependencies next, in a layer of their own: a change to the code alone reuses it.
COPY pyproject.toml ./
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python3 -m venv /opt/arting \
    && python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
print("\n".join(p["project"]["dependencies"] + p["build-system"]["requires"]))' \
        > requirements.txt \
    && /opt/arting/bin/pip install --no-cache-dir --disable-pip-version-check --quiet \
        --requirement requirements.txt
COPY README.md setup.py ./
COPY arting_daemon ./arting_daemon
# pip and setuptools are needed to install, not to run.
RUN /opt/arting/bin/pip install --no-cache-dir --disable-pip-version-check --quiet \
        --no-deps --no-build-isolation . \
    && /opt/arting/bin/pip uninstall --yes --quiet pip setuptools \
    && find /opt/arting -type d \( -name tests -o -name test \) -prune -exec rm -rf {} + \
    && find /opt/arting -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \
        -o -name '*.c' -o -name '*.h' -o -name '*.pyi' \) -delete \
    && find /opt/arting -type f -name '*.so' -exec strip --strip-debug {} +

FROM ${BASE}
RUN groupadd --gid 10001 arting \
    && useradd --uid 10001 --gid arting --home-dir /data --no-create-home --no-log-init \
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
