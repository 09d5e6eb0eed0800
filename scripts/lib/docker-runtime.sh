# What the Docker runtime's tests and benchmark need (sourced by scripts/test.sh and
# scripts/bench.sh after common.sh). Each step is idempotent and quick when already done.

# ensure_docker_engine: docker.io and debootstrap installed and dockerd answering (needs root
# the first time; without root and without an engine, Docker tests skip, or fail under CI=true).
ensure_docker_engine() {
  if [ "$(id -u)" = 0 ]; then
    bash "$MLLIB_ROOT/scripts/lib/docker-engine.sh" || die "the Docker engine could not be started"
  elif ! docker_engine_answers; then
    say "No Docker engine answers and this is not root: Docker tests will skip (fail under CI=true)"
  fi
}

docker_engine_answers() {
  "$VENV/bin/python" -c 'import sys; from mllib.runtime.engine import engine_problem; sys.exit(engine_problem() is not None)'
}

# ensure_base_image: mllib's offline base image (debootstrap, about a minute the first time,
# kept in the engine afterwards).
ensure_base_image() {
  docker_engine_answers || return 0
  "$VENV/bin/mllib" runtime build-base >&2 || die "building mllib's base image failed (see above)"
}
