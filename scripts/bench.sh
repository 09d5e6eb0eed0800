#!/usr/bin/env bash
# Benchmarks in full mode (the test suite runs them in a short mode). Safe to run again.
#   bash scripts/bench.sh docker [--reps N]   the Docker runtime's overhead over `docker run`
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/docker-runtime.sh"
ensure_python_env "dev"
cd "$MLLIB_ROOT"

case "${1:-}" in
  docker)
    shift
    ensure_docker_engine
    ensure_base_image
    exec "$VENV/bin/python" benchmarks/docker_overhead.py "$@"
    ;;
  *) die "usage: bash scripts/bench.sh docker [--reps N]" ;;
esac
