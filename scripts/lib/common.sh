# Shared set-up steps for scripts/*.sh (sourced, not run). Every step is idempotent and quick when done.

MLLIB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${MLLIB_VENV:-$MLLIB_ROOT/.venv}"

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
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ensure_python_env EXTRAS: a venv in .venv with mllib installed (editable) with those extras.
ensure_python_env() {
  local extras="$1" python="${PYTHON:-python3}"
  command -v "$python" >/dev/null || die "python3 is not installed: apt-get install -y python3 python3-venv"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "mllib needs Python 3.11 or newer; found $("$python" --version 2>&1)"
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then apt_install python3-venv; fi
    say "Creating $VENV"
    "$python" -m venv "$VENV"
  fi
  # Reinstall only when the dependencies or the extras asked for changed.
  local stamp="$VENV/.mllib-installed" want
  want="$(sha256sum "$MLLIB_ROOT/pyproject.toml" | cut -c1-16) $extras"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "Installing mllib[$extras] into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$MLLIB_ROOT[$extras]" 2>&1 \
      | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
    "$VENV/bin/python" -c "import mllib" || die "installing mllib failed (see above)"
    echo "$want" > "$stamp"
  fi
}

# ensure_torch: the CPU build of torch the pytorch template's tests use (a bare `torch` requirement
# would pull a multi-GB CUDA build; 2.13.0 comes from local disk on our machines).
ensure_torch() {
  "$VENV/bin/python" -c "import torch" 2>/dev/null && return 0
  say "Installing torch 2.13.0 (CPU) for the pytorch template"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  "$VENV/bin/python" -c "import torch" || die "installing torch failed (see above)"
}
