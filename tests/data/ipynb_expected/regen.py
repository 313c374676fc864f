"""Regenerate the expected Jupyter-layout files for src/ipynb's round-trip tests.

Usage (from the repository root, with the shared fixtures beside it):

    python3 tests/data/ipynb_expected/regen.py [FIXTURES_DIR]

For every fixture notebook that nbledger accepts, this writes what Jupyter's
`nbformat.write` would write for it, with one deliberate difference: only cell
`source` is split into lines, everything else keeps the shape it was read with
(nbformat's own read/write would also join and re-split output text, which
nbledger never does, to leave other tools' data exactly as they wrote it).
So: plain `json.load`, every code/markdown/raw cell's source joined and split
with `str.splitlines(keepends=True)`, then
`json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\\n"`.

Plain json (not `nbformat.read`) is used on purpose: nbformat.read silently
renumbers duplicate cell ids, which nbledger's importer does itself and records.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / ".." / "shared" / "fixtures" / "nbformat"

# Fixtures nbledger must refuse (they fail nbformat's schema); no expected file.
REFUSED = {"invalid.ipynb", "invalid_cell_id.ipynb", "no_min_version.ipynb", "v4_5_invalid_metadata.ipynb"}
CELL_TYPES = {"code", "markdown", "raw"}


def jupyter_layout(nb):
    for cell in nb["cells"]:
        if cell.get("cell_type") in CELL_TYPES and "source" in cell:
            source = cell["source"]
            if isinstance(source, list):
                source = "".join(source)
            cell["source"] = source.splitlines(True)
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def main():
    for path in sorted(FIXTURES.glob("*.ipynb")):
        if path.name in REFUSED:
            continue
        with path.open(encoding="utf-8") as f:
            nb = json.load(f)
        (HERE / path.name).write_text(jupyter_layout(nb), encoding="utf-8", newline="")


if __name__ == "__main__":
    main()
