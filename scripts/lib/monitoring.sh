# Set-up for the monitoring tests (sourced after common.sh): Debian's prometheus, promtool and
# node_exporter (its textfile collector serves the scheduled evaluations' file). The tests start
# their own on loopback ports; the packages' services are not used.
ensure_prometheus() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null \
    && command -v prometheus-node-exporter >/dev/null && return 0
  apt_install prometheus prometheus-node-exporter
  command -v promtool >/dev/null || die "prometheus is installed but promtool is not on PATH"
  command -v prometheus-node-exporter >/dev/null \
    || die "prometheus-node-exporter is installed but not on PATH"
}
