# Stand-ins for the registry images compose.replicas.yaml names (redis:7, nginx:1.27),
# built from Debian's packages on the tests' base, for machines that reach no registry.
# Each runs as its official image does: the same commands, paths and health-check tools.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS redis
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data \
    && printf '%s\n' '#!/bin/sh' \
        '# As the official image: redis-server started without a config file listens to' \
        '# the container network (protected mode off).' \
        'if [ "$1" = redis-server ]; then shift; set -- redis-server --protected-mode no "$@"; fi' \
        'exec "$@"' > /usr/local/bin/docker-entrypoint.sh \
    && chmod +x /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]

FROM ${BASE} AS nginx
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends nginx-light curl >/dev/null \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
