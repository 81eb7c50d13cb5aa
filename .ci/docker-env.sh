#!/usr/bin/env bash
# Docker test environment for hatch-flyte's image tests (run as root; safe to run again).
#
#   1. installs (only what is missing) Docker's engine, a registry, debootstrap, htpasswd, skopeo, umoci;
#   2. starts dockerd (vfs, no iptables, no bridge; its data root on a tmpfs when the machine has the
#      memory) unless an engine answers at /var/run/docker.sock;
#   3. starts two registries on loopback: plain on 127.0.0.1:5000, htpasswd auth on 127.0.0.1:5001;
#   4. builds an offline Python base image from Debian bookworm with debootstrap (the rootfs tarball is
#      cached in $CACHE_DIR and reused by later runs on the same machine) and imports it into the engine;
#   5. writes the facts the tests read to .ci/.docker-env (KEY=VALUE lines) and prints them.
#
# All network traffic stays on 127.0.0.1, except apt and debootstrap, which use the Debian mirror apt
# is already configured with. Processes started here (dockerd, registries) keep running after the
# script exits; their logs and pid files are in $STATE_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE_DIR="${HATCH_FLYTE_CI_STATE_DIR:-/var/lib/hatch-flyte-ci}"
CACHE_DIR="${HATCH_FLYTE_CI_CACHE_DIR:-/var/cache/hatch-flyte-ci}"
DOCKER_DATA_ROOT="${HATCH_FLYTE_CI_DOCKER_DATA_ROOT:-/var/lib/hatch-flyte-docker}"
# The vfs driver copies the whole root filesystem for every container and build step; on a tmpfs
# those copies stay in memory instead of going to disk. auto: on a machine with >= 12 GiB of memory.
DOCKER_TMPFS="${HATCH_FLYTE_CI_DOCKER_TMPFS:-auto}"
DOCKER_SOCK=/var/run/docker.sock
BASE_IMAGE=hatch-flyte-test/python:3.11-bookworm
BASE_PYTHON_SERIES=3.11
BASE_TARBALL="$CACHE_DIR/base-bookworm-py3.tar"
SUITE=bookworm
REGISTRY=127.0.0.1:5000
AUTH_REGISTRY=127.0.0.1:5001
AUTH_USER=flyte
AUTH_PASSWORD=flyte-pass
ENV_FILE=.ci/.docker-env
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive
export DOCKER_HOST="unix://$DOCKER_SOCK"

mkdir -p "$STATE_DIR" "$CACHE_DIR"

log() { echo "docker-env: $*"; }
die() {
  echo "docker-env: ERROR: $*" >&2
  exit 1
}
now() { date +%s.%N; }
T_START=$(now)
T_STEP=$T_START
step_done() {
  local t
  t=$(now)
  awk -v a="$T_STEP" -v b="$t" -v m="$1" 'BEGIN { printf "docker-env: [%6.1fs] %s\n", b - a, m }'
  T_STEP=$t
}
# Wait (bounded) until "$@" succeeds; returns 1 on time-out.
wait_for() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}
http_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" || true; }

# ---------------------------------------------------------------------------------------------------
# 1. Packages (only the missing ones; apt-get update once, and only when something is missing).
# ---------------------------------------------------------------------------------------------------
PACKAGES=(docker.io docker-registry debootstrap apache2-utils skopeo umoci curl ca-certificates)
missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  apt-get update -qq
  # Keep the packages' init scripts from starting Debian's own dockerd / registry (default config,
  # iptables, :5000 on all interfaces): this script starts both itself with its own configuration.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt_log="$STATE_DIR/apt-install.log"
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$apt_log" 2>&1; then
    tail -n 30 "$apt_log" >&2
    [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
    die "apt-get install failed (log: $apt_log)"
  fi
  [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
fi
# Debian's docker client, matching Debian's dockerd (a newer client may sit earlier on PATH).
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker)
step_done "packages (${#missing[@]} missing: ${missing[*]:-none})"

# ---------------------------------------------------------------------------------------------------
# 2. Docker engine.
# ---------------------------------------------------------------------------------------------------
engine_up() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }
if engine_up; then
  log "engine already answers at $DOCKER_SOCK"
else
  dockerd_log="$STATE_DIR/dockerd.log"
  dockerd_pid="$STATE_DIR/dockerd.pid"
  if [ -s "$dockerd_pid" ] && kill -0 "$(cat "$dockerd_pid")" 2>/dev/null; then
    log "dockerd (pid $(cat "$dockerd_pid")) is running but not answering yet; waiting"
  else
    mkdir -p "$DOCKER_DATA_ROOT"
    mem_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
    if [ "$DOCKER_TMPFS" != 0 ] && [ "$(stat -f -c %T "$DOCKER_DATA_ROOT")" != tmpfs ] \
      && { [ "$DOCKER_TMPFS" = 1 ] || [ "$mem_kib" -ge $((12 * 1024 * 1024)) ]; }; then
      # size is a ceiling, not a reservation: memory is used as images are written.
      if mount -t tmpfs -o size=50%,mode=0711 hatch-flyte-docker "$DOCKER_DATA_ROOT"; then
        log "data root $DOCKER_DATA_ROOT on a tmpfs (up to half of $((mem_kib / 1024 / 1024)) GiB)"
      else
        log "cannot mount a tmpfs on $DOCKER_DATA_ROOT; the engine's data stays on disk"
      fi
    fi
    log "starting dockerd (data root $DOCKER_DATA_ROOT, log $dockerd_log)"
    # setsid + all three standard streams redirected: the daemon outlives this script and holds no
    # pipe of the caller open. The proxy variables point at a closed loopback port so that a pull
    # of anything not on loopback (e.g. an unknown image that the SDK's containers.run() tries to
    # pull from Docker Hub) fails at once with "proxyconnect ... connection refused" and sends no
    # traffic (not even a DNS query) off this machine; loopback registries are never proxied.
    env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=localhost,127.0.0.0/8 \
      setsid dockerd \
      --host "unix://$DOCKER_SOCK" \
      --iptables=false --ip6tables=false --bridge=none \
      --storage-driver=vfs \
      --data-root "$DOCKER_DATA_ROOT" \
      --pidfile "$dockerd_pid" \
      </dev/null >>"$dockerd_log" 2>&1 &
  fi
  if ! wait_for 60 engine_up; then
    tail -n 40 "$dockerd_log" >&2 || true
    die "dockerd did not answer at $DOCKER_SOCK within 60 s (log: $dockerd_log)"
  fi
fi
ENGINE_VERSION=$("$DOCKER" version --format '{{.Server.Version}}')
STORAGE_DRIVER=$("$DOCKER" info --format '{{.Driver}}')
step_done "docker engine $ENGINE_VERSION (storage driver $STORAGE_DRIVER)"

# ---------------------------------------------------------------------------------------------------
# 3. Registries on loopback, each with its own config and storage (never Debian's default config).
# ---------------------------------------------------------------------------------------------------
HTPASSWD_FILE="$STATE_DIR/registry-auth.htpasswd"
# bcrypt with the lowest cost (4): the registry checks it on every request.
if [ ! -s "$HTPASSWD_FILE" ] || ! htpasswd -v -b "$HTPASSWD_FILE" "$AUTH_USER" "$AUTH_PASSWORD" >/dev/null 2>&1; then
  htpasswd -B -C 4 -b -c "$HTPASSWD_FILE" "$AUTH_USER" "$AUTH_PASSWORD" 2>/dev/null
fi

# start_registry NAME ADDR EXPECTED_CODE [AUTH_YAML]
start_registry() {
  local name=$1 addr=$2 expected=$3 auth=${4:-}
  local url="http://$addr/v2/" code cfg="$STATE_DIR/$name.yml" pidfile="$STATE_DIR/$name.pid"
  local logfile="$STATE_DIR/$name.log" storage="$STATE_DIR/$name-storage"
  code=$(http_code "$url")
  if [ "$code" = "$expected" ]; then
    log "registry $name already answers at $url ($code)"
    return 0
  fi
  if [ "$code" != "000" ]; then
    die "something else answers at $url (HTTP $code, expected $expected); free $addr and run again"
  fi
  mkdir -p "$storage"
  {
    echo "version: 0.1"
    echo "log:"
    echo "  level: warn"
    echo "  accesslog:"
    echo "    disabled: true"
    echo "storage:"
    echo "  filesystem:"
    echo "    rootdirectory: $storage"
    echo "  delete:"
    echo "    enabled: true"
    echo "http:"
    echo "  addr: $addr"
    [ -z "$auth" ] || printf '%s\n' "$auth"
  } >"$cfg"
  log "starting registry $name on $addr (config $cfg)"
  setsid docker-registry serve "$cfg" </dev/null >>"$logfile" 2>&1 &
  echo $! >"$pidfile"
  local deadline=$((SECONDS + 30))
  until [ "$(http_code "$url")" = "$expected" ]; do
    if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      tail -n 20 "$logfile" >&2 || true
      die "registry $name did not answer $expected at $url (log: $logfile)"
    fi
    sleep 0.2
  done
}
start_registry registry-plain "$REGISTRY" 200
start_registry registry-auth "$AUTH_REGISTRY" 401 "auth:
  htpasswd:
    realm: hatch-flyte-test
    path: $HTPASSWD_FILE"
step_done "registries $REGISTRY (plain) and $AUTH_REGISTRY (htpasswd)"

# ---------------------------------------------------------------------------------------------------
# 4. Offline Python base image (debootstrap minbase, cached as a tarball).
# ---------------------------------------------------------------------------------------------------
debian_mirror() {
  local m
  m=$(apt-cache policy 2>/dev/null | grep -m1 -oE 'https?://[^ ]+/debian' || true)
  if [ -z "$m" ]; then
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
      grep -v '^[[:space:]]*#' | grep -m1 -oE 'https?://[^ ]+/debian/?( |$)' | tr -d ' ' || true)
  fi
  [ -n "$m" ] || die "cannot find the Debian mirror apt uses (apt-cache policy / sources lists)"
  echo "${m%/}"
}

# Pods run as any user id: the image's / must be 0755 like any real base's. Bases and tarballs made
# before that was ensured (mktemp's 0700 root) are made again.
base_usable_by_any_user() {
  "$DOCKER" run --rm --network none --user 65534:65534 "$BASE_IMAGE" true >/dev/null 2>&1
}
tarball_root_mode() {
  tar -tvf "$BASE_TARBALL" --no-recursion ./ 2>/dev/null | cut -c1-10
}

if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1 && base_usable_by_any_user; then
  log "base image $BASE_IMAGE already in the engine"
  step_done "base image (present)"
else
  if [ -s "$BASE_TARBALL" ] && [ "$(tarball_root_mode)" = "drwxr-xr-x" ]; then
    log "reusing cached rootfs $BASE_TARBALL"
  else
    mirror=$(debian_mirror)
    rm -rf "$CACHE_DIR"/rootfs.* "$BASE_TARBALL.tmp" # left by an interrupted earlier run
    rootfs=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap $SUITE (minbase + python3, python3-venv) from $mirror"
    boot_log="$STATE_DIR/debootstrap.log"
    if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      "$SUITE" "$rootfs" "$mirror" >"$boot_log" 2>&1; then
      tail -n 30 "$boot_log" >&2
      tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
      die "debootstrap failed (log: $boot_log)"
    fi
    step_done "debootstrap"
    chmod 0755 "$rootfs" # mktemp made it 0700; the tar records it as the image's /
    # Drop package caches and host-specific files; keep everything a program needs.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
      "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
      "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
      "$rootfs"/debootstrap
    : >"$rootfs/etc/hostname"
    rm -f "$rootfs/etc/resolv.conf"
    tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
      -cf "$BASE_TARBALL.tmp" .
    mv "$BASE_TARBALL.tmp" "$BASE_TARBALL"
    rm -rf "$rootfs"
    trap - EXIT
    log "cached rootfs $BASE_TARBALL ($(du -h "$BASE_TARBALL" | cut -f1))"
    step_done "rootfs tarball"
  fi
  "$DOCKER" import \
    -c "ENV PATH=$IMAGE_PATH" -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' \
    -m "hatch-flyte test base: Debian $SUITE minbase + python3 (debootstrap)" \
    "$BASE_TARBALL" "$BASE_IMAGE" >/dev/null
  step_done "docker import $BASE_IMAGE"
fi

# Smoke test: a container of the base image runs Python, makes a venv without pip, and has tar.
smoke=$("$DOCKER" run --rm --network none "$BASE_IMAGE" sh -c \
  'python3 -m venv --without-pip /tmp/v && /tmp/v/bin/python -c "import sys; print(\"%d.%d.%d\" % sys.version_info[:3])" && tar --version | head -n1') ||
  die "smoke test of $BASE_IMAGE failed"
BASE_PYTHON_VERSION=$(echo "$smoke" | head -n1)
case "$BASE_PYTHON_VERSION" in
  "$BASE_PYTHON_SERIES".*) ;;
  *) die "$BASE_IMAGE has Python $BASE_PYTHON_VERSION, expected $BASE_PYTHON_SERIES.x" ;;
esac
step_done "smoke test: python $BASE_PYTHON_VERSION, venv ok, $(echo "$smoke" | sed -n 2p)"

# ---------------------------------------------------------------------------------------------------
# 5. Facts for the tests.
# ---------------------------------------------------------------------------------------------------
cat >"$ENV_FILE.tmp" <<EOF
HATCH_FLYTE_TEST_BASE_IMAGE=$BASE_IMAGE
HATCH_FLYTE_TEST_REGISTRY=$REGISTRY
HATCH_FLYTE_TEST_AUTH_REGISTRY=$AUTH_REGISTRY
HATCH_FLYTE_TEST_AUTH_USER=$AUTH_USER
HATCH_FLYTE_TEST_AUTH_PASSWORD=$AUTH_PASSWORD
DOCKER_HOST=$DOCKER_HOST
EOF
mv "$ENV_FILE.tmp" "$ENV_FILE"
log "facts ($ENV_FILE):"
sed 's/^/  /' "$ENV_FILE"
awk -v a="$T_START" -v b="$(now)" -v d="$(du -sh "$DOCKER_DATA_ROOT" 2>/dev/null | cut -f1)" \
  'BEGIN { printf "docker-env: total %.1fs; docker data root %s\n", b - a, d }'
