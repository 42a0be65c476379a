#!/usr/bin/env bash
# Build the esdb image for compose/docker-compose.yml with podman, from the repository's
# sources: the Debian base image (mmdebstrap + podman import) if it is missing, the wheels of
# esdb and its dependencies (built on the host: nothing can be downloaded inside a build), then
# compose/Containerfile. A second run with unchanged sources reuses every layer.
#
#   compose/build-image.sh            # tags $ESDB_IMAGE, default localhost/esdb:local
#
# Needs podman, runc and mmdebstrap (.ci/run installs them) and a Python 3.11 ($PYTHON,
# default python3.11) with pip: the image's Python is Debian bookworm's 3.11.
set -euo pipefail

COMPOSE_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$COMPOSE_DIR")"
IMAGE="${ESDB_IMAGE:-localhost/esdb:local}"
BASE_IMAGE="localhost/esdb-base:bookworm"
PYTHON="${PYTHON:-python3.11}"
WHEELS="$COMPOSE_DIR/wheels"
# podman needs runc, cgroupfs and explicit ulimits on these machines (containers.conf).
export CONTAINERS_CONF="${CONTAINERS_CONF:-$COMPOSE_DIR/containers.conf}"

log() { printf 'build-image: %s\n' "$*" >&2; }

for tool in podman mmdebstrap; do
    command -v "$tool" >/dev/null || { log "$tool not found (apt-get install podman runc mmdebstrap)"; exit 1; }
done
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { log "$PYTHON is not Python 3.11, the image's Python"; exit 1; }

# One build at a time on this machine: the base image and the tags are shared by every
# checkout, and the wheels directory by every run in this one.
exec 9>"${TMPDIR:-/tmp}/esdb-build-image.lock"
flock 9

if ! podman image exists "$BASE_IMAGE"; then
    log "making $BASE_IMAGE with mmdebstrap"
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    mmdebstrap --quiet --variant=minbase --include=ca-certificates,python3,python3-venv \
        bookworm "$rootfs/rootfs.tar"
    podman import --quiet "$rootfs/rootfs.tar" "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
fi

log "building wheels"
rm -rf "$WHEELS"
mkdir -p "$WHEELS/deps" "$WHEELS/esdb"
# A fixed timestamp makes the esdb wheel the same bytes for the same sources, so the build
# reuses its layer.
SOURCE_DATE_EPOCH=315532800 "$PYTHON" -m pip wheel --quiet --disable-pip-version-check \
    --wheel-dir "$WHEELS/deps" "$ROOT"
mv "$WHEELS"/deps/esdb-*.whl "$WHEELS/esdb/"

log "building $IMAGE"
podman build --quiet --layers --tag "$IMAGE" --file "$COMPOSE_DIR/Containerfile" "$COMPOSE_DIR"
# Each change of the sources leaves the previous build's untagged layers behind (~60 MB): keep
# a day's worth as cache, drop the rest.
podman image prune --force --filter label=io.esdb.build=compose --filter until=24h >/dev/null
