# Set-up for the CI workflow tests (sourced after common.sh): shellcheck, which actionlint runs on
# every `run:` script of the workflow `mllib init --ci github` writes.
ensure_shellcheck() {
  command -v shellcheck >/dev/null && return 0
  apt_install shellcheck
}
