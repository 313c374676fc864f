"""nbformat's own v4 test notebooks (see tests/fixtures/README.md):
accepted ones are imported on first touch and survive an unrelated edit with
every original cell intact; invalid ones are refused and left alone."""

from __future__ import annotations

import json
import shutil
import warnings

import nbformat
import pytest

import nbl

pytestmark = pytest.mark.anyio

ACCEPTED = [
    "test4.ipynb",
    "test4docinfo.ipynb",
    "test4jupyter_metadata.ipynb",
    "test4custom.ipynb",
    "test4jupyter_metadata_timings.ipynb",
    "many_tracebacks.ipynb",
    "test4.5.ipynb",
    "v4_5_no_cell_id.ipynb",
    "invalid_unique_cell_id.ipynb",
    "test4plus.ipynb",
]
# fixture -> a word the refusal's message must contain (it names the problem)
REFUSED = {
    "invalid.ipynb": "source",
    "invalid_cell_id.ipynb": "id",
    "no_min_version.ipynb": "nbformat_minor",
    "v4_5_invalid_metadata.ipynb": "metadata",
}
ADDED = "print('added by nbledger')\n# unrelated edit"


def test_every_fixture_is_classified(fixtures_dir):
    present = {p.name for p in fixtures_dir.glob("*.ipynb")}
    assert present == set(ACCEPTED) | set(REFUSED), "a fixture is neither accepted nor refused here"


def expected_ids(orig_cells):
    """Original ids that must be kept: valid ones, at their first occurrence."""
    seen, out = set(), []
    for c in orig_cells:
        i = c.get("id")
        if isinstance(i, str) and nbl.CELL_ID_RE.match(i) and i not in seen:
            seen.add(i)
            out.append(i)
        else:
            out.append(None)  # a new id is assigned
    return out


async def import_and_edit(root, fixtures_dir, name):
    """Copy the fixture in, touch it only through an append, and return
    (original JSON, written JSON)."""
    src = fixtures_dir / name
    orig = json.loads(src.read_text(encoding="utf-8"))
    shutil.copyfile(src, root / name)
    n = len(orig["cells"])
    async with nbl.legacy_session(root) as t:
        before = {e["path"]: e for e in (await t.ok("list_notebooks"))["notebooks"]}[name]
        assert before["imported"] is False and before["current_version"] == 0, before
        assert before["cell_count"] == n, before
        assert (root / name).read_bytes() == src.read_bytes(), "list_notebooks rewrote the file"

        ins = await t.ok("insert_cell", path=name, source=ADDED)
        # Version 1 is the import (client "external"), version 2 the insert.
        assert ins["version"] == 2, ins
        assert ins["index"] == n, ins

        content = await t.ok("get_notebook_content", path=name)
        assert content["current_version"] == 2
        assert [c["source"] for c in content["cells"]] == [nbl.join(c.get("source", "")) for c in orig["cells"]] + [ADDED]
        assert [c["cell_type"] for c in content["cells"]] == [c["cell_type"] for c in orig["cells"]] + ["code"]
        server_ids = [c["cell_id"] for c in content["cells"]]

        after = {e["path"]: e for e in (await t.ok("list_notebooks"))["notebooks"]}[name]
        assert after["imported"] is True and after["current_version"] == 2 and after["cell_count"] == n + 1, after

    # Byte-equal to nbformat.writes() of itself when the original was too (the
    # others keep shapes nbformat would change, e.g. base64 images as line lists).
    original_text = src.read_text(encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbformat's complaints about the original's ids
        nb = nbformat.reads(original_text, as_version=nbformat.NO_CONVERT)
        same_as_nbformat = original_text == nbformat.writes(nb) + "\n"
    data = nbl.check_written_notebook(root / name, nbformat_writes_equal=same_as_nbformat)
    assert [c["id"] for c in data["cells"]] == server_ids, "file ids differ from the ids the server reports"

    # A new server on the same root sees its own write: no new import, same ids.
    async with nbl.legacy_session(root) as t:
        again = await t.ok("get_notebook_content", path=name)
        assert again["current_version"] == 2
        assert [c["cell_id"] for c in again["cells"]] == server_ids
    return orig, data


@pytest.mark.parametrize("name", ACCEPTED)
async def test_accepted_fixture_survives_unrelated_edit(root, fixtures_dir, name):
    orig, data = await import_and_edit(root, fixtures_dir, name)
    n = len(orig["cells"])
    assert len(data["cells"]) == n + 1

    # Notebook level: minor version raised to 5 (a newer one kept), everything else kept.
    assert data["nbformat"] == 4
    assert data["nbformat_minor"] == max(5, orig["nbformat_minor"])
    strip = lambda d: {k: v for k, v in d.items() if k not in ("cells", "nbformat_minor")}  # noqa: E731
    assert strip(data) == strip(orig)

    # Every original cell: same type, source, metadata, outputs, attachments
    # and unknown fields (multi-line strings compared joined).
    for i, (o, w) in enumerate(zip(orig["cells"], data["cells"])):
        assert nbl.normalize_cell(w) == nbl.normalize_cell(o), f"{name}: cell {i} changed"

    # Ids: valid original ids kept as they are; missing, invalid or duplicate ones replaced.
    for i, (want, got) in enumerate(zip(expected_ids(orig["cells"]), data["cells"])):
        if want is not None:
            assert got["id"] == want, f"{name}: cell {i} id {want!r} became {got['id']!r}"
        else:
            assert nbl.CELL_ID_RE.match(got["id"]), got["id"]

    added = data["cells"][-1]
    assert added["cell_type"] == "code"
    assert "".join(added["source"]) == ADDED
    assert added["outputs"] == [] and added["execution_count"] is None


@pytest.mark.parametrize("name", ACCEPTED)
async def test_accepted_fixture_keeps_value_shapes(root, fixtures_dir, name):
    """Contract §8.8: outputs, metadata and attachments keep the value shapes
    they were read with (line lists stay line lists, strings stay strings)."""
    orig, data = await import_and_edit(root, fixtures_dir, name)
    for i, (o, w) in enumerate(zip(orig["cells"], data["cells"])):
        for key in ("metadata", "outputs", "attachments"):
            assert w.get(key) == o.get(key), f"{name}: cell {i} {key} not kept as written"


@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_invalid_fixture_is_refused_and_untouched(root, fixtures_dir, name):
    src = fixtures_dir / name
    shutil.copyfile(src, root / name)
    original = src.read_bytes()
    async with nbl.legacy_session(root) as t:
        for tool, args in [
            ("get_notebook_content", {}),
            ("get_notebook_outline", {}),
            ("search_notebook", {"pattern": "x"}),
            ("insert_cell", {"source": "x = 1"}),
            ("update_cell", {"index": 0, "source": "x = 1"}),
        ]:
            error = await t.err(tool, path=name, **args)
            assert error["code"] == "invalid_notebook", f"{tool} on {name}: {error}"
            assert REFUSED[name] in error["message"], f"{tool} on {name}: message does not name the problem: {error}"
        assert (root / name).read_bytes() == original, f"{name} was modified"
        # The refusals left no event: the next event of this fresh log is version 1.
        created = await t.ok("create_notebook", path="other.ipynb")
        assert created["version"] == 1
    assert (root / name).read_bytes() == original, f"{name} was modified"
