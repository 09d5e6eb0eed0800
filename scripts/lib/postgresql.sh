# PostgreSQL for the team server's tests and benchmarks (sourced). Idempotent and quick when done.
#
# Installs Debian's `postgresql` (its server programs live in /usr/lib/postgresql/VERSION/bin)
# and stops the cluster the package starts: no test uses it. Each test session makes its own
# throwaway cluster under a temp folder, reached on a unix socket only (tests/pgcluster.py), run
# as the `postgres` OS user the package creates (PostgreSQL refuses to run as root).

ensure_postgresql() {
  apt_install postgresql
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    || die "postgresql is installed but no initdb was found under /usr/lib/postgresql"
  id postgres >/dev/null 2>&1 || die "postgresql is installed but the postgres user is missing"
  command -v runuser >/dev/null || die "runuser (util-linux) is needed to run PostgreSQL as postgres"
}
