# Set-up for serving benchmarks (sourced after common.sh): wrk drives HTTP load in
# benchmarks/serving.py and its short mode in the test suite.
ensure_wrk() {
  command -v wrk >/dev/null && return 0
  apt_install wrk
}
