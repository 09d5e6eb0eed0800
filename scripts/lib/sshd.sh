# SSH test set-up for the agent tests (sourced by scripts/test.sh). Idempotent and quick when done.
#
# Installs Debian's openssh-server (sshd, sftp-server), openssh-client (ssh-keygen, scp) and
# python3-venv (agents build their venv with the system python3), and makes /run/sshd, which
# sshd needs for privilege separation. It starts no daemon: each test session starts its own
# sshd instances on loopback, on random ports, with their own config, host keys and OS users
# (tests/agents/conftest.py), and removes them afterwards.

ensure_sshd_tools() {
  apt_install openssh-server openssh-client python3-venv
  [ -x /usr/sbin/sshd ] || die "openssh-server is installed but /usr/sbin/sshd is missing"
  if [ ! -d /run/sshd ]; then as_root mkdir -p /run/sshd && as_root chmod 0755 /run/sshd; fi
}
