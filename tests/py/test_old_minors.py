"""Contract §8.8: a file written with cell ids says nbformat_minor >= 5,
whatever minor it was read with (an empty 4.0 notebook that gains a cell
becomes 4.5).

Notebooks of every older minor (4.0-4.4), empty or with cells (which have
no ids: the key does not exist before 4.5), reach every write tool in two
ways: as a file the log has never seen, imported by the tool's own call, and
as a known notebook replaced outside by the old file just before the call.
Every file written is checked with Python nbformat."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

import nbl

pytestmark = pytest.mark.anyio

# The cells of the old notebooks, and the same cells as create_notebook
# specs: a known notebook replaced by the old file keeps its ids, since
# cells without ids are matched by type and source (§8.8).
OLD_CELLS = [
    {"cell_type": "markdown", "metadata": {}, "source": ["# Old\n", "notebook"]},
    {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": ["x = 1"]},
]
SPECS = [{"source": "# Old\nnotebook", "cell_type": "markdown"}, {"source": "x = 1"}]

# Tools that act on a notebook without knowing its ids (cells by index),
# so that they can be the very first touch of a file.
BY_INDEX = [
    "insert_cell",
    "batch_insert_cells",
    "update_cell",
    "batch_update_cells",
    "delete_cell",
    "change_cell_type",
    "copy_cells",
    "move_cells",
]
NEEDS_CELLS = {"update_cell", "batch_update_cells", "delete_cell", "change_cell_type"}


def old_notebook(minor: int, with_cells: bool, source: str = "x = 1") -> dict:
    cells = json.loads(json.dumps(OLD_CELLS)) if with_cells else []
    if cells:
        cells[1]["source"] = [source]
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": minor}
    # The input itself is a valid notebook of its minor version.
    nbformat.validate(nbformat.from_dict(json.loads(json.dumps(nb))))
    return nb


def save_outside(path: Path, nb: dict) -> None:
    """An outside save: a new file renamed over the old one."""
    tmp = path.with_name(path.name + ".saving")
    tmp.write_text(nbl.jupyter_layout(nb), encoding="utf-8")
    os.replace(tmp, path)


class Run:
    def __init__(self, t: nbl.Tools, root: Path, minor: int):
        self.t, self.root, self.minor = t, root, minor
        self.sources = 0

    async def check(self, path: str, what: str) -> None:
        """The file is valid nbformat 4.5+ in Jupyter's layout and holds the
        ids the server reports."""
        try:
            data = nbl.check_written_notebook(self.root / path, nbformat_writes_equal=True)
        except Exception as e:  # name the case: the loop runs many
            raise AssertionError(f"4.{self.minor}, {what}: {e}") from e
        content = await self.t.ok("get_notebook_content", path=path)
        assert [c["id"] for c in data["cells"]] == [c["cell_id"] for c in content["cells"]], what

    async def source_cell(self) -> tuple[str, str]:
        """A cell in a notebook of its own, to copy or move in."""
        self.sources += 1
        path = f"src-{self.sources}.ipynb"
        created = await self.t.ok("create_notebook", path=path, cells=[{"source": "from elsewhere"}])
        return path, created["cell_ids"][0]

    async def by_index(self, tool: str, path: str) -> dict:
        t = self.t
        if tool == "insert_cell":
            return await t.ok(tool, path=path, source="y = 2")
        if tool == "batch_insert_cells":
            return await t.ok(tool, path=path, cells=[{"source": "a = 1"}, {"source": "Notes", "cell_type": "markdown"}])
        if tool == "update_cell":
            return await t.ok(tool, path=path, index=0, source="# New title")
        if tool == "batch_update_cells":
            return await t.ok(tool, path=path, updates=[{"index": 1, "source": "x = 2"}])
        if tool == "delete_cell":
            return await t.ok(tool, path=path, index=0)
        if tool == "change_cell_type":
            return await t.ok(tool, path=path, index=0, cell_type="raw")
        src, cell = await self.source_cell()
        return await t.ok(tool, source_path=src, dest_path=path, cell_ids=[cell])

    async def known(self, path: str) -> list[str]:
        """A notebook the log knows, with the old notebook's cells; its ids."""
        return (await self.t.ok("create_notebook", path=path, cells=SPECS))["cell_ids"]


@pytest.mark.parametrize("minor", range(5))
async def test_old_notebook_is_written_as_4_5_by_every_write_tool(root, minor):
    async with nbl.legacy_session(root, client_name="old-minors") as t:
        run = Run(t, root, minor)
        for with_cells in (False, True):
            kind = "cells" if with_cells else "empty"
            for tool in BY_INDEX:
                if tool in NEEDS_CELLS and not with_cells:
                    continue
                # The tool's call is the first touch: it imports the file.
                path = f"import-{tool}-{kind}.ipynb"
                save_outside(root / path, old_notebook(minor, with_cells))
                await run.by_index(tool, path)
                await run.check(path, f"{tool} on a new {kind} file")

                # The log knows the notebook; the old file replaces it.
                path = f"outside-{tool}-{kind}.ipynb"
                await run.known(path)
                save_outside(root / path, old_notebook(minor, with_cells))
                await run.by_index(tool, path)
                await run.check(path, f"{tool} after an outside save of a {kind} file")

            what = f"after an outside save of a {kind} file"

            # recover_cell brings a cell back into the old notebook.
            path = f"recover-{kind}.ipynb"
            ids = await run.known(path)
            await t.ok("delete_cell", path=path, cell_id=ids[1])
            save_outside(root / path, old_notebook(minor, with_cells))
            await t.ok("recover_cell", path=path, cell_id=ids[1])
            await run.check(path, f"recover_cell {what}")

            # restore_snapshot of a snapshot taken while the notebook said 4.x.
            path = f"restore-{kind}.ipynb"
            await run.known(path)
            save_outside(root / path, old_notebook(minor, True))
            await t.ok("snapshot_notebook", path=path, name="old")
            await run.check(path, "snapshot_notebook after an outside save of a cells file")
            # The snapshot says 4.x, the file now 4.5: as a file with ids,
            # that snapshot is 4.5, so restoring it changes nothing.
            same = await t.ok("restore_snapshot", path=path, name="old")
            assert same["changed"] is False, same
            save_outside(root / path, old_notebook(minor, with_cells, source="x = 2"))
            restored = await t.ok("restore_snapshot", path=path, name="old")
            assert restored["changed"] is True, restored
            await run.check(path, f"restore_snapshot {what}")

            # create_notebook on the path of an old notebook removed outside.
            path = f"create-{kind}.ipynb"
            await run.known(path)
            save_outside(root / path, old_notebook(minor, with_cells))
            await t.ok("get_notebook_content", path=path)
            (root / path).unlink()
            await t.ok("create_notebook", path=path, cells=[{"source": "again"}])
            await run.check(path, f"create_notebook on a removed {kind} file")

            if not with_cells:
                continue
            # Tools that address the old cells by id, and locks (their
            # events rewrite the file too).
            for tool in ["copy_cells", "move_cells", "lock_cells", "unlock_cells", "snapshot_notebook"]:
                path = f"ids-{tool}.ipynb"
                ids = await run.known(path)
                if tool == "unlock_cells":
                    await t.ok("lock_cells", path=path, cell_ids=[ids[0]])
                save_outside(root / path, old_notebook(minor, True))
                if tool in ("copy_cells", "move_cells"):
                    await t.ok(tool, source_path=path, cell_ids=[ids[1]], dest_index=0)
                elif tool == "snapshot_notebook":
                    await t.ok(tool, path=path, name="s")
                else:
                    await t.ok(tool, path=path, cell_ids=[ids[0]])
                await run.check(path, f"{tool} {what}")
