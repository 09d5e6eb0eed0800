#!/usr/bin/env bash
# Run a benchmark in its full mode: `bash scripts/bench.sh data`. Safe to run again.
# (The test suite runs each in a short mode; these are the figures the README reports.)
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
ensure_python_env "dev"
cd "$MLLIB_ROOT"

case "${1:-}" in
  data) shift; exec "$VENV/bin/python" benchmarks/bench_datasets.py "$@" ;;
  *) die "usage: bash scripts/bench.sh data [--short] [--dir DIR]" ;;
esac
