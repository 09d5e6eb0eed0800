#!/usr/bin/env bash
# Run a benchmark in full mode (the test suite runs each in a short mode).
#   bash scripts/bench.sh agents     # SFTP upload to an agent vs scp, 200 MB
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/sshd.sh"
ensure_python_env "dev"
cd "$MLLIB_ROOT"
case "${1:-}" in
  agents) ensure_sshd_tools; exec "$VENV/bin/python" benchmarks/agents_transfer.py "${@:2}" ;;
  *) die "usage: scripts/bench.sh agents [ARGS]" ;;
esac
