# Set-up for the monitoring tests (sourced after common.sh): Debian's prometheus and promtool. The
# tests start their own Prometheus on a loopback port; the package's service is not used.
ensure_prometheus() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  apt_install prometheus
  command -v promtool >/dev/null || die "prometheus is installed but promtool is not on PATH"
}
