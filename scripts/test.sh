#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian machine, then run the whole suite.
# Arguments go to pytest (e.g. scripts/test.sh tests/test_params.py -x). Safe to run again.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/serving.sh"
source "$(dirname "$0")/lib/sshd.sh"
source "$(dirname "$0")/lib/docker-runtime.sh"
source "$(dirname "$0")/lib/dashboard.sh"
source "$(dirname "$0")/lib/postgresql.sh"
source "$(dirname "$0")/lib/monitoring.sh"
source "$(dirname "$0")/lib/ci.sh"
ensure_python_env "dev ray"
ensure_sshd_tools
ensure_torch
ensure_wrk
ensure_tmux
ensure_postgresql
ensure_prometheus
ensure_shellcheck
ensure_docker_engine
ensure_base_image

cd "$MLLIB_ROOT"
say "Lint"
"$VENV/bin/ruff" check mllib agents tests benchmarks
"$VENV/bin/ruff" format --check mllib agents tests benchmarks

say "Arrows between packages (README: Architecture)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_architecture.py

say "Types ([tool.mypy] in pyproject.toml)"
"$VENV/bin/mypy"

say "Tests"
if [ "$#" -eq 0 ] && [ "${MLLIB_TEST_WORKERS:-3}" -gt 0 ]; then
    # The whole suite on three workers (pytest-xdist; MLLIB_TEST_WORKERS=0 runs it in one
    # process): a file's tests stay together, those sharing the SSH lab or the Ray head on one
    # worker, and the Docker tests that check the engine for leftovers hold it alone
    # (tests/conftest.py). Most tests wait on subprocesses, so three workers suit two cores.
    set -- -n "${MLLIB_TEST_WORKERS:-3}" --dist loadgroup
fi
exec "$VENV/bin/python" -m pytest "$@"
