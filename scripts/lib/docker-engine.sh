#!/usr/bin/env bash
# Make sure a local Docker engine is installed and answering, for mllib's docker runtime.
#
# Usage (as root, Debian 12):
#   scripts/lib/docker-engine.sh          # execute: ensure the engine, exit 0 when it answers
#   source scripts/lib/docker-engine.sh   # source: same, and defines mllib_docker_engine_ensure
#
# What it does, each step only when needed, so it is safe (and < 1 s) to run again and again:
#   1. apt-get install docker.io and debootstrap (debootstrap builds mllib's base image
#      without any image registry; see mllib/runtime/base_image.py).
#   2. start dockerd detached (setsid, log: /var/log/mllib-dockerd.log) if `docker info`
#      does not answer and no dockerd process exists: never a second dockerd.
#   3. poll `docker info` until the engine answers, at most MLLIB_DOCKERD_TIMEOUT seconds.
#
# Environment:
#   MLLIB_DOCKERD_TIMEOUT  seconds to wait for the engine (default 60)
#   MLLIB_DOCKERD_LOG      dockerd's log file (default /var/log/mllib-dockerd.log)
#
# The Debian client /usr/bin/docker is used explicitly: another `docker` earlier on PATH may be
# a different client. The local socket is named explicitly too, so a DOCKER_HOST pointing at
# some other engine does not make us believe the local one is up.

# Function bodies run in subshells `( ... )`: strict mode and `exit` never leak into a shell that
# sources this file.

_mllib_docker() (
    unset DOCKER_CONTEXT
    exec /usr/bin/docker --host unix:///var/run/docker.sock "$@"
)

# True when the local engine answers.
_mllib_engine_answers() (
    [[ -x /usr/bin/docker ]] || exit 1
    _mllib_docker info --format '{{.ServerVersion}}' >/dev/null 2>&1
)

# Install docker.io and debootstrap with apt, only the ones that are missing.
_mllib_install_packages() (
    set -euo pipefail
    local missing=()
    # An engine that already answers (another distribution's packages, e.g. a CI runner's) is
    # kept: installing docker.io beside it would conflict with its packages.
    [[ -x /usr/bin/docker && -x /usr/sbin/dockerd ]] || _mllib_engine_answers || missing+=(docker.io)
    [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
    ((${#missing[@]})) || exit 0
    # debootstrap verifies the archive with the Debian keyring; ca-certificates lets it and
    # docker reach https mirrors. Recommends (apparmor, needrestart, git...) are not needed.
    missing+=(debian-archive-keyring ca-certificates)
    echo "mllib: installing ${missing[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends)
    # Package lists may be absent or stale on a fresh machine: update once, only on failure.
    if ! "${apt[@]}" install "${missing[@]}" >&2; then
        apt-get -q -o DPkg::Lock::Timeout=300 update >&2
        "${apt[@]}" install "${missing[@]}" >&2
    fi
)

# Start dockerd detached unless one is already running; never start a second one.
_mllib_start_dockerd() (
    set -euo pipefail
    local log="${MLLIB_DOCKERD_LOG:-/var/log/mllib-dockerd.log}"
    mkdir -p /run/lock
    # Serialise concurrent callers, so two of them cannot both start a dockerd.
    exec 9>/run/lock/mllib-docker-engine.lock
    flock -w 120 9 || { echo "mllib: could not take /run/lock/mllib-docker-engine.lock" >&2; exit 1; }
    if pidof dockerd >/dev/null 2>&1; then
        echo "mllib: dockerd is already running (pid $(pidof dockerd)); waiting for it to answer" >&2
        exit 0
    fi
    _mllib_engine_answers && exit 0
    echo "mllib: starting dockerd (log: $log)" >&2
    mkdir -p "$(dirname "$log")"
    # setsid -f: own session, so it survives the caller's terminal; fd 9 (the lock) is closed
    # so dockerd does not hold the lock forever.
    setsid -f /usr/sbin/dockerd </dev/null >>"$log" 2>&1 9>&-
)

# Poll until the engine answers or the timeout passes.
_mllib_wait_engine() (
    set -euo pipefail
    local timeout="${MLLIB_DOCKERD_TIMEOUT:-60}"
    local log="${MLLIB_DOCKERD_LOG:-/var/log/mllib-dockerd.log}"
    local deadline=$((SECONDS + timeout))
    until _mllib_engine_answers; do
        if ((SECONDS >= deadline)); then
            echo "mllib: the Docker engine did not answer within ${timeout}s." >&2
            if [[ -f "$log" ]]; then
                echo "mllib: last lines of $log:" >&2
                tail -n 20 "$log" >&2
            fi
            echo "mllib: check the log, stop any broken dockerd, then run this script again" \
                "(or raise MLLIB_DOCKERD_TIMEOUT)." >&2
            exit 1
        fi
        sleep 0.2
    done
)

# Ensure docker.io and debootstrap are installed and the local engine answers.
mllib_docker_engine_ensure() (
    set -euo pipefail
    # Fast path: everything already there.
    if [[ -x /usr/sbin/debootstrap ]] && _mllib_engine_answers; then
        exit 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "mllib: installing and starting the Docker engine needs root: run this as root" \
            "(sudo ${BASH_SOURCE[0]})." >&2
        exit 1
    fi
    _mllib_install_packages
    _mllib_engine_answers && exit 0
    _mllib_start_dockerd
    _mllib_wait_engine
)

# Executed or sourced, the file does its work; sourced, its status is the function's status.
mllib_docker_engine_ensure
