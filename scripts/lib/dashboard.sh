# Set-up for the dashboard's end-to-end test and benchmark (sourced after common.sh): tmux runs
# the real `mllib dashboard` in a terminal that the test types into and reads back.
ensure_tmux() {
  command -v tmux >/dev/null && return 0
  apt_install tmux
  command -v tmux >/dev/null || die "tmux is installed but not on PATH"
}
