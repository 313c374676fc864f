#!/usr/bin/env bash
# Prepares the JupyterLab the room tests (tests/room.rs) join.
#
#   tests/jupyter/setup.sh
#
# Creates a virtualenv at ${NBLEDGER_JUPYTERENV:-<repo>/target/jupyterenv}
# on first use and installs tests/jupyter/requirements.txt into it (again
# only when that file changes): JupyterLab, jupyter-collaboration, and
# pycrdt for the simulated person (tests/jupyter/person.py). Needs Python
# 3.10+ with venv and pip (${PYTHON:-python3}). Prints the venv path on its
# last line of stderr; prints nothing on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${NBLEDGER_JUPYTERENV:-$repo/target/jupyterenv}"
python="${PYTHON:-python3}"
req="$here/requirements.txt"
stamp="$venv/.nbledger-requirements"

exec 1>&2

if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    command -v "$python" >/dev/null || { echo "setup.sh: $python not found (set PYTHON)"; exit 2; }
    echo "setup.sh: creating the JupyterLab virtualenv at $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv" || {
        echo "setup.sh: '$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
        exit 2
    }
fi

want="$("$venv/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$req")"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] || [ ! -x "$venv/bin/jupyter-lab" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" >"$stamp"
fi
echo "$venv"
