# Shared set-up steps for scripts/*.sh (sourced, not run). Every step is idempotent and quick when
# done, and a step that fails stops the script with the failing tool's own error: nothing is hidden,
# and nothing records a step as done unless its result was checked.

MLLIB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${MLLIB_VENV:-$MLLIB_ROOT/.venv}"
# uv installs mllib from the lock (uv.lock) into $VENV; it lives in a venv of its own, at this
# version, so the tool that reads the lock is pinned too.
UV_VERSION=0.13.9
UV_VENV="${MLLIB_UV_VENV:-$MLLIB_ROOT/.venv-uv}"
UV="$UV_VENV/bin/uv"
# The pytorch template's tests use this CPU build (pyproject.toml's [tool.uv] locks the same).
TORCH_VERSION=2.13.0
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

# uv reads neither pip.conf nor PIP_* variables: have it trust the system's CA bundle as pip does
# here (HTTPS through a TLS-intercepting proxy), and use this machine's Python, never a download.
export UV_SYSTEM_CERTS="${UV_SYSTEM_CERTS:-1}"
export UV_PYTHON_DOWNLOADS="${UV_PYTHON_DOWNLOADS:-never}"
# Compile .pyc files at install time as pip does: where PYTHONDONTWRITEBYTECODE is set, nothing
# else ever writes them, and every `mllib` would compile its libraries again (2x its start-up).
export UV_COMPILE_BYTECODE="${UV_COMPILE_BYTECODE:-1}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "this step needs root (or sudo): $*"; fi
}

# apt_install PKG...: install the Debian packages that are missing, and only those.
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} = 0 ] && return 0
  say "Installing ${missing[*]} (apt)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    || die "apt-get update failed (its error is above)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed (its error is above)"
}

# pip_quietly PIP ARGS...: run pip, leaving out only the warnings about this machine's
# extra-index folders that do not exist; pip's errors and its exit status are kept.
pip_quietly() {
  "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

# ensure_python PYTHON: that interpreter exists, is 3.11+, and can make venvs.
ensure_python() {
  local python="$1"
  command -v "$python" >/dev/null || die "python3 is not installed: apt-get install -y python3 python3-venv"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "mllib needs Python 3.11 or newer; found $("$python" --version 2>&1)"
  if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then apt_install python3-venv; fi
}

# ensure_uv: uv $UV_VERSION from PyPI, in $UV_VENV.
ensure_uv() {
  [ "$("$UV" --version 2>/dev/null | cut -d' ' -f2)" = "$UV_VERSION" ] && return 0
  local python="${PYTHON:-python3}"
  ensure_python "$python"
  say "Installing uv $UV_VERSION into $UV_VENV"
  [ -x "$UV_VENV/bin/python" ] || "$python" -m venv "$UV_VENV" \
    || die "could not create $UV_VENV (the error is above)"
  pip_quietly "$UV_VENV/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION" \
    || die "installing uv $UV_VERSION failed: pip's error is above"
  [ "$("$UV" --version 2>/dev/null | cut -d' ' -f2)" = "$UV_VERSION" ] \
    || die "$UV --version does not say $UV_VERSION after installing it"
}

# ensure_python_env "EXTRA...": mllib (editable) and the extras named, in $VENV, at exactly the
# versions in uv.lock. MLLIB_DEPS=newest resolves the newest releases pyproject.toml allows
# instead, and writes them to uv.lock (the weekly CI job; commit the lock when the suite passes).
ensure_python_env() {
  local extras="$1" python="${PYTHON:-python3}" mode="${MLLIB_DEPS:-locked}"
  ensure_python "$python"
  ensure_uv
  local stamp="$VENV/.mllib-installed"
  local args=(sync --project "$MLLIB_ROOT" --python "$python")
  local what="mllib${extras:+[${extras// /,}]}"
  case "$mode" in
    locked) args+=(--locked --quiet) ;;
    newest) args+=(--upgrade) ;;  # uv lists what changed
    *) die "MLLIB_DEPS must be locked or newest, not '$mode'" ;;
  esac
  for extra in $extras; do args+=(--extra "$extra"); done
  # mllib itself is always installed anew: uv would take a venv whose `mllib` command was lost
  # for one where it is installed.
  args+=(--reinstall-package mllib)
  if [ "$mode" = locked ] && [ "$(cat "$stamp" 2>/dev/null)" = "$(_env_stamp "$extras")" ] \
    && "$VENV/bin/mllib" --version >/dev/null 2>&1; then
    _compile_source
    return 0
  fi
  rm -f "$stamp"
  say "Installing $what into $VENV ($mode dependencies)"
  UV_PROJECT_ENVIRONMENT="$VENV" "$UV" "${args[@]}" \
    || die "installing $what failed: uv's error is above"
  # The installed command, run from outside the repository: the source tree must not stand in.
  (cd / && "$VENV/bin/mllib" --version >/dev/null) \
    || die "mllib was installed, but '$VENV/bin/mllib --version' fails (its error is above)"
  _env_stamp "$extras" >"$stamp"
  _compile_source
}

# mllib is installed editable (its source is this checkout): write its .pyc files as pip does for
# an installed package. Where PYTHONDONTWRITEBYTECODE is set nothing else writes them, and every
# `mllib` command and run's worker compiled mllib's modules again (~15 ms CPU of a worker's ~100).
# Only changed modules are compiled again; __pycache__ is ignored by git, code snapshots and images.
_compile_source() {
  "$VENV/bin/python" -m compileall -q "$MLLIB_ROOT/mllib" >/dev/null \
    || die "compiling mllib's modules failed: $VENV/bin/python -m compileall $MLLIB_ROOT/mllib"
}

# What an installed $VENV was made from: uv's version, pyproject.toml, uv.lock, the extras and
# whether its bytecode was compiled.
_env_stamp() {
  printf '%s %s %s bytecode=%s\n' "$UV_VERSION" \
    "$(cat "$MLLIB_ROOT/pyproject.toml" "$MLLIB_ROOT/uv.lock" | sha256sum | cut -c1-16)" "$1" \
    "$UV_COMPILE_BYTECODE"
}

# ensure_torch: the CPU build of torch the pytorch template's tests use, never a multi-GB CUDA
# build: from a folder of wheels when one holds it (MLLIB_TORCH_WHEELS, else pip's find-links, as
# /opt/wheels on our machines), else PyTorch's CPU index. Its dependencies get uv.lock's versions.
ensure_torch() {
  "$VENV/bin/python" -c "import importlib.metadata as m, sys
sys.exit(m.version('torch') != '$TORCH_VERSION+cpu')" 2>/dev/null && return 0
  local source=() folder constraints="$VENV/.torch-constraints.txt"
  for folder in ${MLLIB_TORCH_WHEELS:-${PIP_FIND_LINKS:-/opt/wheels}}; do
    if compgen -G "$folder/torch-$TORCH_VERSION+cpu-*.whl" >/dev/null; then
      source=(--find-links "$folder")
      break
    fi
  done
  if [ ${#source[@]} = 0 ]; then
    # The CPU index also mirrors some of torch's dependencies: take each from wherever it has the
    # locked version.
    source=(--index "$TORCH_CPU_INDEX" --index-strategy unsafe-best-match)
  fi
  say "Installing torch $TORCH_VERSION (CPU) from ${source[1]} for the pytorch template"
  "$UV" export --project "$MLLIB_ROOT" --locked --all-extras --no-hashes --no-header \
    --no-emit-project --no-emit-package torch --quiet -o "$constraints" \
    || die "could not export uv.lock's versions (uv's error is above)"
  "$UV" pip install --quiet --python "$VENV/bin/python" "${source[@]}" -c "$constraints" \
    "torch==$TORCH_VERSION+cpu" || die "installing torch $TORCH_VERSION failed: uv's error is above"
  "$VENV/bin/python" -c "import torch" || die "torch was installed but does not import (see above)"
}
