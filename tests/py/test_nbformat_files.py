"""Every notebook file nbledger writes is a valid nbformat 4.5 notebook in
Jupyter's own layout, byte-for-byte what nbformat itself would write."""

from __future__ import annotations

import pytest

import nbl

pytestmark = pytest.mark.anyio


def written_notebooks(root):
    return sorted(p for p in root.rglob("*.ipynb") if ".nbledger" not in p.relative_to(root).parts)


async def check_all(t: nbl.Tools, root, expected: set[str]) -> None:
    """Check every notebook under root: valid, in layout, and equal in ids,
    types and sources to what the server reports."""
    paths = written_notebooks(root)
    assert {p.relative_to(root).as_posix() for p in paths} == expected
    for p in paths:
        data = nbl.check_written_notebook(p, nbformat_writes_equal=True)
        content = await t.ok("get_notebook_content", path=p.relative_to(root).as_posix())
        assert [c["id"] for c in data["cells"]] == [c["cell_id"] for c in content["cells"]]
        assert [c["cell_type"] for c in data["cells"]] == [c["cell_type"] for c in content["cells"]]
        assert ["".join(c["source"]) for c in data["cells"]] == [c["source"] for c in content["cells"]]
        for c in data["cells"]:
            if c["cell_type"] == "code":
                assert "outputs" in c and "execution_count" in c, c
            else:
                assert "outputs" not in c and "execution_count" not in c, c


async def test_every_written_notebook_validates(root):
    async with nbl.legacy_session(root) as t:
        a = await t.ok(
            "create_notebook",
            path="a.ipynb",
            kernel_name="python3",
            cells=[
                {"source": "# Analysis ✓ — naïve 日本語", "cell_type": "markdown"},
                {"source": "import math\n\n\ndef f(x):\n    return math.sqrt(x)\n"},
                {"source": "", "cell_type": "code"},
                {"source": "raw text\nline 2", "cell_type": "raw"},
                # Python's str.splitlines boundaries, which nbformat splits sources on.
                {"source": "a\rb\u2028c\x0cd\x85e\r\nf\n\n"},
            ],
        )
        md_id, fn_id, empty_id, raw_id, _ = a["cell_ids"]
        await check_all(t, root, {"a.ipynb"})
        data = nbl.read_json(root / "a.ipynb")
        assert data["nbformat"] == 4 and data["nbformat_minor"] == 5
        assert data["metadata"]["kernelspec"]["name"] == "python3"
        assert data["metadata"]["kernelspec"].get("display_name")
        assert data["cells"][1]["source"] == ["import math\n", "\n", "\n", "def f(x):\n", "    return math.sqrt(x)\n"]
        assert data["cells"][2]["source"] == []
        assert data["cells"][0]["source"] == ["# Analysis ✓ — naïve 日本語"]

        await t.ok("create_notebook", path="sub/dir/empty.ipynb")
        await check_all(t, root, {"a.ipynb", "sub/dir/empty.ipynb"})
        assert nbl.read_json(root / "sub/dir/empty.ipynb")["cells"] == []

        await t.ok(
            "insert_cell",
            path="a.ipynb",
            index=0,
            source="tagged\ttab \"quotes\" \\ backslash\r\nwindows line",
            metadata={"tags": ["parameters"], "custom": {"n": [1, 2.5, None, True]}},
        )
        await t.ok(
            "batch_insert_cells",
            path="sub/dir/empty.ipynb",
            cells=[{"source": "x = 1"}, {"source": "Notes", "cell_type": "markdown", "metadata": {"k": "v"}}],
        )
        await check_all(t, root, {"a.ipynb", "sub/dir/empty.ipynb"})
        data = nbl.read_json(root / "a.ipynb")
        assert data["cells"][0]["metadata"] == {"tags": ["parameters"], "custom": {"n": [1, 2.5, None, True]}}

        await t.ok("update_cell", path="a.ipynb", cell_id=empty_id, source="f(4)\n")
        await t.ok("change_cell_type", path="a.ipynb", cell_id=fn_id, cell_type="markdown")
        await t.ok("change_cell_type", path="a.ipynb", cell_id=md_id, cell_type="code")
        await t.ok("change_cell_type", path="a.ipynb", cell_id=raw_id, cell_type="markdown")
        await t.ok(
            "batch_update_cells",
            path="a.ipynb",
            updates=[{"cell_id": md_id, "source": "print('ok')"}, {"cell_id": raw_id, "source": "é\n"}],
        )
        await t.ok("delete_cell", path="a.ipynb", cell_ids=[fn_id])
        await check_all(t, root, {"a.ipynb", "sub/dir/empty.ipynb"})

        data = nbl.read_json(root / "a.ipynb")
        assert [c["id"] for c in data["cells"][1:4]] == [md_id, empty_id, raw_id]
        assert [c["cell_type"] for c in data["cells"]] == ["code", "code", "code", "markdown", "code"]
        assert data["cells"][3]["source"] == ["é\n"]
        assert data["cells"][4]["source"] == ["a\r", "b\u2028", "c\x0c", "d\x85", "e\r\n", "f\n", "\n"]

        # Delete everything: an empty notebook is still a valid notebook.
        ids = [c["id"] for c in data["cells"]]
        await t.ok("delete_cell", path="a.ipynb", cell_ids=ids)
        await check_all(t, root, {"a.ipynb", "sub/dir/empty.ipynb"})
        assert nbl.read_json(root / "a.ipynb")["cells"] == []
