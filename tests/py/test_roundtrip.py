"""A notebook written by Python nbformat (4.4, no ids, rich outputs and
attachments) keeps every untouched cell when nbledger edits another one."""

from __future__ import annotations

import base64
import json

import nbformat
import pytest
from nbformat import v4

import nbl

pytestmark = pytest.mark.anyio

# A 1x1 transparent PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    )
).decode()


def build_notebook() -> nbformat.NotebookNode:
    nb = v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python", "version": "3.11.7"},
        "myorg": {"reviewed": True, "scores": [1, 2.5, -3e-05], "owner": "Zoë", "nested": {"a": None}},
    }
    nb.cells = [
        v4.new_markdown_cell(
            "# Report ✓\n\n![logo](attachment:logo.png)\n",
            attachments={"logo.png": {"image/png": PNG}},
            metadata={"tags": ["header"]},
        ),
        v4.new_code_cell(
            "import sys\nprint('hi')\nprint('oops', file=sys.stderr)\ndisplay(img)",
            execution_count=7,
            metadata={"tags": ["plot"], "collapsed": False, "jupyter": {"source_hidden": False}},
            outputs=[
                v4.new_output("stream", name="stdout", text="hi\n"),
                v4.new_output("stream", name="stderr", text="oops\nsecond line\n"),
                v4.new_output(
                    "display_data",
                    data={"image/png": PNG, "text/plain": "<Figure size 1x1>\nwith two lines"},
                    metadata={"image/png": {"width": 1, "height": 1}},
                ),
                v4.new_output("execute_result", data={"text/plain": "42"}, execution_count=7),
            ],
        ),
        v4.new_code_cell("x = 1", execution_count=8, outputs=[]),
        v4.new_raw_cell("raw *stuff*", metadata={"format": "text/restructuredtext"}),
        v4.new_code_cell(
            "1 / 0",
            execution_count=9,
            outputs=[
                v4.new_output(
                    "error",
                    ename="ZeroDivisionError",
                    evalue="division by zero",
                    traceback=["\x1b[0;31m---------\x1b[0m", "ZeroDivisionError: division by zero"],
                )
            ],
        ),
    ]
    # As nbformat 4.4 without ids: what older Jupyter wrote.
    nb.nbformat_minor = 4
    for cell in nb.cells:
        cell.pop("id", None)
    return nb


async def test_nbformat_written_notebook_round_trip(root):
    path = root / "report.ipynb"
    nbformat.write(build_notebook(), str(path))
    original_raw = path.read_text(encoding="utf-8")
    original = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
    nbformat.validate(original)
    assert original.nbformat_minor == 4 and all("id" not in c for c in original.cells)

    async with nbl.legacy_session(root) as t:
        content = await t.ok("get_notebook_content", path="report.ipynb", include_outputs=True)
        assert content["current_version"] == 1  # the import, by client "external"
        ids = [c["cell_id"] for c in content["cells"]]
        assert len(ids) == 5 and len(set(ids)) == 5
        assert [c["source"] for c in content["cells"]] == [c.source for c in original.cells]

        # Outputs come back as nbformat output objects, multi-line strings joined,
        # images left out unless asked for.
        outs = content["cells"][1]["outputs"]
        assert [o["output_type"] for o in outs] == ["stream", "stream", "display_data", "execute_result"]
        assert outs[0] == {"output_type": "stream", "name": "stdout", "text": "hi\n"}
        assert outs[1]["text"] == "oops\nsecond line\n"
        assert outs[2]["data"]["text/plain"] == "<Figure size 1x1>\nwith two lines"
        assert outs[2]["data"]["image/png"] != PNG
        if isinstance(outs[2]["data"]["image/png"], dict):
            assert outs[2]["data"]["image/png"].get("omitted_bytes") == len(base64.b64decode(PNG))
        assert outs[3]["data"] == {"text/plain": "42"} and outs[3]["execution_count"] == 7
        err = content["cells"][4]["outputs"][0]
        assert err["ename"] == "ZeroDivisionError" and err["traceback"][-1] == "ZeroDivisionError: division by zero"

        with_images = await t.ok(
            "get_notebook_content", path="report.ipynb", cell_ids=[ids[1]], include_outputs=True, include_images=True
        )
        assert with_images["cells"][0]["outputs"][2]["data"]["image/png"] == PNG

        # Importing a notebook without ids writes it once, as 4.5 with those ids,
        # and changes nothing else (contract §3).
        imported = nbl.check_written_notebook(path, nbformat_writes_equal=True)
        assert imported["nbformat_minor"] == 5
        assert [c["id"] for c in imported["cells"]] == ids
        raw_orig = json.loads(original_raw)
        assert [{k: v for k, v in c.items() if k != "id"} for c in imported["cells"]] == raw_orig["cells"]
        assert imported["metadata"] == raw_orig["metadata"]

        upd = await t.ok("update_cell", path="report.ipynb", cell_id=ids[2], source="x = 2\ny = x * 21")
        assert upd["version"] == 2 and upd["index"] == 2

        found = await t.ok("search_notebook", path="report.ipynb", pattern="second line", search_in="outputs")
        assert [(m["cell_id"], m["in"], m.get("output_index")) for m in found["matches"]] == [(ids[1], "output", 1)]

    data = nbl.check_written_notebook(path, nbformat_writes_equal=True)
    assert data["nbformat_minor"] == 5
    assert [c["id"] for c in data["cells"]] == ids

    written = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
    assert written.metadata == original.metadata
    for i, (o, w) in enumerate(zip(original.cells, written.cells)):
        if i == 2:
            assert w.source == "x = 2\ny = x * 21"
            assert w.cell_type == "code" and w.metadata == o.metadata
            continue
        # Untouched cells: identical in content (nbformat-normalized and as raw JSON).
        w = {k: v for k, v in w.items() if k != "id"}
        assert w == dict(o), f"cell {i} changed"
    for i in (0, 1, 3, 4):
        got = {k: v for k, v in data["cells"][i].items() if k != "id"}
        assert got == raw_orig["cells"][i], f"cell {i} changed on disk"
