#!/usr/bin/env bash
# Prepares the real Jupyter kernel the kernel tests (tests/kernels.rs) run on.
#
#   tests/kernel/setup.sh
#
# Creates a virtualenv at ${NBLEDGER_KERNELENV:-<repo>/target/kernelenv} on
# first use, installs tests/kernel/requirements.txt into it (again only when
# that file changes), and installs ipykernel's kernelspec inside the venv's
# prefix (`--sys-prefix`: <venv>/share/jupyter/kernels/python3), so it is
# found by the Python-prefix rule or through JUPYTER_PATH=<venv>/share/jupyter,
# and never touches the user's own kernelspecs. Needs Python 3.10+ with venv
# and pip (${PYTHON:-python3}). Prints the venv path on its last line of
# stderr; prints nothing on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${NBLEDGER_KERNELENV:-$repo/target/kernelenv}"
python="${PYTHON:-python3}"
req="$here/requirements.txt"
stamp="$venv/.nbledger-requirements"

exec 1>&2

if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    command -v "$python" >/dev/null || { echo "setup.sh: $python not found (set PYTHON)"; exit 2; }
    echo "setup.sh: creating the kernel virtualenv at $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv" || {
        echo "setup.sh: '$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
        exit 2
    }
fi

want="$("$venv/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$req")"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] \
    || [ ! -f "$venv/share/jupyter/kernels/python3-bare/kernel.json" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    "$venv/bin/python" -m ipykernel install --sys-prefix >/dev/null
    # A second kernelspec whose argv runs a bare `python`, as ipykernel's
    # own packaged kernelspec does: the tests check it runs this prefix's
    # interpreter rather than the first `python` on PATH.
    "$venv/bin/python" - "$venv/share/jupyter/kernels" <<'PY'
import json, os, sys
kernels = sys.argv[1]
spec = json.load(open(os.path.join(kernels, "python3", "kernel.json")))
spec["argv"][0] = "python"
spec["display_name"] = "Python 3 (bare argv)"
os.makedirs(os.path.join(kernels, "python3-bare"), exist_ok=True)
json.dump(spec, open(os.path.join(kernels, "python3-bare", "kernel.json"), "w"), indent=1)
PY
    echo "$want" >"$stamp"
fi
echo "$venv"
