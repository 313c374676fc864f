#!/usr/bin/env bash
# Runs the Python interop suite (tests/py) against the nbledger binary.
#
#   tests/py/run.sh [pytest args...]
#
# Creates a virtualenv at ${NBLEDGER_PYENV:-<repo>/target/pyenv} on first use
# and installs tests/py/requirements.txt into it (again only when that file
# changes). Needs Python 3.10+ with venv and pip (${PYTHON:-python3}) and the
# built binary: ${NBLEDGER_BIN:-<repo>/target/debug/nbledger}. Exits with
# pytest's status.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${NBLEDGER_PYENV:-$repo/target/pyenv}"
python="${PYTHON:-python3}"
req="$here/requirements.txt"
stamp="$venv/.nbledger-requirements"

if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    command -v "$python" >/dev/null || { echo "run.sh: $python not found (set PYTHON)" >&2; exit 2; }
    echo "run.sh: creating the test virtualenv at $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv" || {
        echo "run.sh: '$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
        exit 2
    }
fi

want="$("$venv/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$req")"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" >"$stamp"
fi

export NBLEDGER_BIN="${NBLEDGER_BIN:-$repo/target/debug/nbledger}"
export PYTHONDONTWRITEBYTECODE=1
cd "$repo"
status=0
"$venv/bin/python" -m pytest -q tests/py "$@" || status=$?
exit "$status"
