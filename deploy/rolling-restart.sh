#!/bin/sh
# Restart, or upgrade, the replicas of compose.replicas.yaml one at a time, losing no
# request and no job. For each replica running now: start a new one beside it (from the
# image ARTING_IMAGE names now), wait until it is ready (/readyz) and the load balancer
# sees it, then stop the old one (SIGTERM: it stops taking requests, lets running jobs
# finish within shutdown_grace, and hands the rest over to the others) and remove it.
# Redis and nginx are left alone.
#
#   deploy/rolling-restart.sh                                  # restart
#   docker-compose -f compose.replicas.yaml build arting && deploy/rolling-restart.sh
#                                                              # upgrade to a new build
#   ARTING_IMAGE=arting-2api:1.4 deploy/rolling-restart.sh     # upgrade to another image
#
# Arguments are compose's own options (default: -f compose.replicas.yaml), e.g.
#   deploy/rolling-restart.sh -p arting -f compose.replicas.yaml --env-file .env
# Environment: COMPOSE (the compose command; default docker-compose if installed, else
# "docker compose"), DOCKER (default docker), READY_TIMEOUT (seconds a new replica may
# take to be ready; 120), STOP_TIMEOUT (seconds an old one gets to drain; 30), SERVICE
# (arting).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
[ $# -gt 0 ] || set -- -f "$here/compose.replicas.yaml"
if [ -z "${COMPOSE:-}" ]; then
    if command -v docker-compose >/dev/null 2>&1; then COMPOSE=docker-compose
    else COMPOSE="docker compose"; fi
fi
DOCKER=${DOCKER:-docker}
SERVICE=${SERVICE:-arting}
READY_TIMEOUT=${READY_TIMEOUT:-120}
STOP_TIMEOUT=${STOP_TIMEOUT:-30}

compose() { $COMPOSE "$@"; }
replicas() { compose "$@" ps -q "$SERVICE" | sort; }
say() { echo "rolling-restart: $*" >&2; }

ready() {   # the daemon in container $1 answers /readyz
    $DOCKER exec "$1" python -c '
import os, sys, urllib.request
port = os.environ.get("ARTING_PORT") or "8090"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    sys.exit(0 if opener.open(f"http://127.0.0.1:{port}/readyz", timeout=3).status == 200 else 1)
except Exception:
    sys.exit(1)' >/dev/null 2>&1
}

old=$(replicas "$@")
count=$(echo "$old" | grep -c . || true)
[ "$count" -gt 0 ] || { say "no $SERVICE replica is running (start them with up -d)"; exit 1; }
say "$count replica(s) to restart, one at a time"
for replica in $old; do
    before=$(replicas "$@")
    compose "$@" up --detach --no-deps --no-recreate --scale "$SERVICE=$((count + 1))" \
        "$SERVICE" >&2
    new=$(replicas "$@" | grep -vxF "$before" || true)
    [ -n "$new" ] || { say "no new replica was started"; exit 1; }
    waited=0
    until ready "$new"; do
        if [ "$waited" -ge "$READY_TIMEOUT" ]; then
            say "the new replica $new is not ready after ${READY_TIMEOUT}s; the old one" \
                "keeps running. Its log: $DOCKER logs $new"
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    sleep 3     # nginx re-resolves the replicas' addresses every second
    say "replica $(echo "$new" | cut -c1-12) is ready; stopping $(echo "$replica" | cut -c1-12)"
    $DOCKER stop --time "$STOP_TIMEOUT" "$replica" >/dev/null
    $DOCKER rm "$replica" >/dev/null
done
say "done: $(replicas "$@" | grep -c .) replica(s) running"
