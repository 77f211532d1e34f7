#!/usr/bin/env bash
# Build both Troupe images without a daemon, with Debian's buildah (chroot isolation, as root).
#
#   images/build.sh      # tools if missing, the stand-in base if missing, both images if stale
#   make images          # the same, then the smoke tests in tests/images (docs/images.md)
#
# Base images cannot be pulled on the machines this project builds on, so this script makes a
# STAND-IN for python:3.11-slim-bookworm from Debian packages (debootstrap --variant=minbase
# bookworm, whose python3 is 3.11) and builds the Dockerfiles FROM it (--build-arg BASE_IMAGE).
# The stand-in is for such machines only: wherever the real base can be pulled, build the
# Dockerfiles as they are (their default BASE_IMAGE is the real one), as `make e2e` does.
#
# Cached: the stand-in is made once; an image is rebuilt only when what goes into it changed
# (a hash of the Dockerfiles, .dockerignore, pyproject.toml, README.md, operator/,
# agent_image/, this script and the base, kept as a label on the image); the layer cache
# (--layers) is kept while the dependencies stay the same (Dockerfiles, pyproject.toml, this
# script, base), so a change to the source alone reinstalls only the project, and is dropped
# when they change, which keeps the disk used bounded.
#
# Environment:
#   TAG=dev              tag of localhost/troupe-operator and localhost/troupe-agent
#   BASE_IMAGE=...       the stand-in's name
#                        (default localhost/troupe-standin/python:3.11-slim-bookworm)
#   REBUILD=1            build both images even if they are up to date
#   REBUILD_BASE=1       make the stand-in again even if it exists (implies REBUILD)
#   DEBIAN_MIRROR=...    where debootstrap fetches from (default http://deb.debian.org/debian)
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${TAG:-dev}
BASE_IMAGE=${BASE_IMAGE:-localhost/troupe-standin/python:3.11-slim-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
LOGS=${TMPDIR:-/tmp}/troupe-images
INPUTS_LABEL=dev.troupe.build-inputs
DEPS_LABEL=dev.troupe.build-deps

say() { printf '[images %(%H:%M:%S)T] %s\n' -1 "$*"; }

# --- tools: Debian's buildah and debootstrap, installed only when missing ------------------------
need_tools() {
    local missing=()
    command -v buildah >/dev/null 2>&1 || missing+=(buildah)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "images: ${missing[*]} missing; installing needs root and apt-get" >&2
        exit 3
    fi
    say "installing ${missing[*]} (Debian packages)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >/dev/null
}

# --- the stand-in base: Debian bookworm minbase + python3 (3.11), as one layer -------------------
# What python:3.11-slim-bookworm gives the Dockerfiles: `python` (3.11) with venv and ensurepip,
# CA certificates, groupadd/useradd. Apt's lists and caches, docs, man pages and locales are
# dropped, as Debian's -slim images drop them. Unlike the real base, Python is Debian's
# (/usr/bin/python3, 3.11.2), not one built into /usr/local.
build_base() {
    local work rootfs ctr mnt
    work=$(mktemp -d /var/tmp/troupe-standin.XXXXXX)
    rootfs=$work/rootfs
    # shellcheck disable=SC2064  # expand now: $work is local
    trap "rm -rf '$work'" RETURN
    say "debootstrap bookworm (minbase + python3) into $rootfs"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm "$rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 || {
        tail -20 "$work/debootstrap.log" >&2
        return 1
    }
    chroot "$rootfs" apt-get clean
    # Relative paths inside the rootfs only: nothing here can name the build machine's own files.
    (cd "$rootfs" && rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/log/* usr/share/doc/* \
        usr/share/man/* usr/share/info/* usr/share/locale/* dev/* tmp/* var/tmp/* debootstrap)
    printf '%s\n' "Troupe's stand-in for python:3.11-slim-bookworm, made with debootstrap" \
        "from Debian bookworm packages by images/build.sh, for machines that cannot pull" \
        "the real base." \
        >"$rootfs"/etc/troupe-standin-base

    say "importing the rootfs as $BASE_IMAGE"
    ctr=$(buildah from scratch)
    mnt=$(buildah mount "$ctr")
    tar -C "$rootfs" -cf - . | tar -C "$mnt" -xpf -
    buildah umount "$ctr" >/dev/null
    buildah config \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 \
        --cmd python3 \
        --label org.opencontainers.image.title="stand-in for python:3.11-slim-bookworm" \
        --label org.opencontainers.image.description="Debian bookworm minbase + python3 (3.11)" \
        "$ctr"
    buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
}

image_exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }

# A hash of files and of the base image's id: all that goes into the images (the files the
# Dockerfiles COPY, the Dockerfiles, this script), or what decides their dependencies.
hash_of() {
    {
        find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
            | sort -z | xargs -0 sha256sum
        buildah inspect --type image --format '{{.FromImageID}}' "$BASE_IMAGE"
    } | sha256sum | cut -c1-16
}
DEPENDENCY_FILES=(pyproject.toml Dockerfile.operator Dockerfile.agent images/build.sh)

label_of() {
    buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" \
        2>/dev/null || true
}

# This machine's CA certificates, for pip's downloads in RUN steps only (the Dockerfiles point
# pip at the system bundle, PIP_CERT): where HTTPS goes through an intercepting proxy, its CA is
# in the host's bundle and in no image. A bind mount (--volume) over a file both bases have is
# committed to no layer, so neither image keeps it.
TRUST=()
trust_host_cas() {
    local bundle=/etc/ssl/certs/ca-certificates.crt
    if [ -f "$bundle" ]; then TRUST=(--volume "$bundle:$bundle:ro"); fi
}

build_image() {
    local dockerfile=$1 image=$2 inputs=$3 deps=$4 log
    log=$LOGS/$(basename "$dockerfile").log
    say "buildah build -f $dockerfile -t $image (log: $log)"
    # --layers: the two images share the runtime stage's first layer.
    buildah build --isolation chroot --network host --pull-never --layers --force-rm \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" "${TRUST[@]}" \
        --label "$INPUTS_LABEL=$inputs" --label "$DEPS_LABEL=$deps" \
        -f "$dockerfile" -t "$image" . >"$log" 2>&1 || {
        tail -40 "$log" >&2
        echo "images: building $image failed (whole log: $log)" >&2
        return 1
    }
}

image_id() { buildah images --quiet --no-trunc "$1" 2>/dev/null || true; }

# The image a tag named before it was built again: removed, with the layers only it used (the
# venv copied into its runtime stage), so that the disk used stays bounded. Not `rmi --prune`:
# the layer cache's images are nameless too, and would go with it.
drop_previous() {
    local previous=$1 image=$2
    if [ -n "$previous" ] && [ "$previous" != "$(image_id "$image")" ]; then
        buildah rmi "$previous" >/dev/null 2>&1 || true
    fi
}

main() {
    local started=$SECONDS inputs deps name image previous stale=()
    need_tools
    mkdir -p "$LOGS"
    if [ "${REBUILD_BASE:-}" = 1 ] || ! image_exists "$BASE_IMAGE"; then
        build_base
        say "stand-in base built in $((SECONDS - started)) s"
    else
        say "stand-in base $BASE_IMAGE present (cached; REBUILD_BASE=1 makes it again)"
    fi
    inputs=$(hash_of operator agent_image README.md .dockerignore "${DEPENDENCY_FILES[@]}")
    deps=$(hash_of "${DEPENDENCY_FILES[@]}")
    for name in operator agent; do
        if [ -n "${REBUILD:-}${REBUILD_BASE:-}" ] \
            || [ "$(label_of "localhost/troupe-$name:$TAG" "$INPUTS_LABEL")" != "$inputs" ]; then
            stale+=("$name")
        fi
    done
    if [ ${#stale[@]} -eq 0 ]; then
        say "both images up to date (inputs $inputs; REBUILD=1 builds them again)"
    else
        if [ "$(label_of "localhost/troupe-${stale[0]}:$TAG" "$DEPS_LABEL")" != "$deps" ]; then
            # Cached layers of other dependencies: dropped, so that the disk used stays bounded.
            say "dependencies changed: dropping the layer cache"
            buildah rmi --prune >/dev/null 2>&1 || true
        fi
        trust_host_cas
        for name in "${stale[@]}"; do
            image=localhost/troupe-$name:$TAG
            previous=$(image_id "$image")
            build_image "Dockerfile.$name" "$image" "$inputs" "$deps"
            drop_previous "$previous" "$image"
        done
    fi
    say "done in $((SECONDS - started)) s"
    buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' \
        | grep -E "troupe-(operator|agent):$TAG |troupe-standin" || true
}

main "$@"
