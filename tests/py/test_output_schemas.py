"""Every tool, succeeding and refused, through the official Python SDK, which
rejects a success whose structuredContent does not match the tool's
outputSchema (a refusal is checked the same way by nbl.Tools). Includes the
results that differ in shape: nothing changed (a restore onto the snapshot's
own content names no backup), forced writes, and a long-poll."""

from __future__ import annotations

import pytest

import nbl

pytestmark = pytest.mark.anyio


class Seen:
    def __init__(self, t: nbl.Tools):
        self.t = t
        self.calls: set[tuple[str, bool]] = set()

    async def ok(self, name: str, /, **arguments):
        self.calls.add((name, False))
        return await self.t.ok(name, **arguments)

    async def err(self, name: str, code: str, /, **arguments):
        self.calls.add((name, True))
        error = await self.t.err(name, **arguments)
        assert error["code"] == code, (name, error)
        return error


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_every_tool_result_matches_its_output_schema(root, mode):
    async with nbl.client_session(root, mode, client_name="schemas") as t:
        s = Seen(t)
        n = "n.ipynb"
        await s.ok("list_notebooks")
        await s.err("list_notebooks", "outside_root", dir="../elsewhere")
        made = await s.ok("create_notebook", path=n, cells=[{"source": "# T", "cell_type": "markdown"}, {"source": "a = 1"}])
        md, a = made["cell_ids"]
        await s.err("create_notebook", "exists", path=n)

        await s.ok("get_notebook_content", path=n, include_outputs=True)
        await s.err("get_notebook_content", "not_found", path="missing.ipynb")
        await s.ok("get_notebook_outline", path=n)
        await s.err("get_notebook_outline", "not_found", path="missing.ipynb")
        await s.ok("search_notebook", path=n, pattern="a")
        await s.err("search_notebook", "invalid_argument", path=n, pattern="(")

        b = (await s.ok("insert_cell", path=n, source="b = 2"))["cell_id"]
        await s.err("insert_cell", "invalid_argument", path=n, source="x", cell_type="sql")
        await s.ok("batch_insert_cells", path=n, cells=[{"source": "c = 3"}])
        await s.err("batch_insert_cells", "not_found", path="missing.ipynb", cells=[{"source": "x"}])
        await s.ok("update_cell", path=n, cell_id=a, source="a = 10")
        same = await s.ok("update_cell", path=n, cell_id=a, source="a = 10")
        assert same["changed"] is False and "version" not in same, same
        await s.err("update_cell", "not_found", path=n, cell_id="ffffffff", source="x")
        await s.ok("batch_update_cells", path=n, updates=[{"cell_id": b, "source": "b = 20"}])
        await s.err("batch_update_cells", "not_found", path=n, updates=[{"cell_id": "ffffffff", "source": "x"}])
        await s.ok("change_cell_type", path=n, cell_id=b, cell_type="raw")
        await s.err("change_cell_type", "invalid_argument", path=n, cell_id=b, cell_type="sql")

        await s.ok("lock_cells", path=n, cell_ids=[a], client_name="other")
        await s.err("lock_cells", "locked", path=n, cell_ids=[a], client_name="schemas")
        forced = await s.ok("update_cell", path=n, cell_id=a, source="a = 100", force=True)
        assert forced["overrode_lock"] == "other", forced
        await s.ok("list_locks")
        await s.err("list_locks", "invalid_argument", colour="blue")
        await s.err("unlock_cells", "locked", path=n, cell_ids=[a], client_name="schemas")
        await s.ok("unlock_cells", path=n, cell_ids=[a], client_name="other")
        nothing = await s.ok("unlock_cells", path=n, client_name="other")
        assert "version" not in nothing, nothing

        await s.ok("delete_cell", path=n, cell_id=b)
        await s.err("delete_cell", "not_found", path=n, cell_id=b)
        await s.ok("recover_cell", path=n, cell_id=b)
        await s.err("recover_cell", "not_deleted", path=n, cell_id=b)
        await s.ok("create_notebook", path="m.ipynb")
        await s.ok("copy_cells", source_path=n, dest_path="m.ipynb", cell_ids=[a])
        await s.err("copy_cells", "not_found", source_path=n, cell_ids=["ffffffff"])
        await s.ok("move_cells", source_path=n, dest_path="m.ipynb", cell_ids=[b])
        await s.err("move_cells", "not_found", source_path=n, cell_ids=["ffffffff"])

        await s.ok("snapshot_notebook", path=n, name="s1", description="start")
        await s.err("snapshot_notebook", "exists", path=n, name="s1")
        await s.ok("list_snapshots", path=n)
        await s.err("list_snapshots", "not_found", path="missing.ipynb")
        # Nothing differs from the snapshot: no event, no backup, no null.
        unchanged = await s.ok("restore_snapshot", path=n, name="s1")
        assert unchanged["changed"] is False and "backup_snapshot" not in unchanged, unchanged
        await s.ok("update_cell", path=n, cell_id=md, source="# New")
        await s.ok("diff_snapshot", path=n, name="s1")
        await s.err("diff_snapshot", "not_found", path=n, name="nope")
        restored = await s.ok("restore_snapshot", path=n, name="s1")
        assert restored["backup_snapshot"].startswith("pre-restore-"), restored
        await s.err("restore_snapshot", "not_found", path=n, name="nope")

        head = await s.ok("get_notebook_changes", path=n)
        await s.ok("get_notebook_changes", path=n, since_version=head["current_version"], wait_ms=10)
        await s.err("get_notebook_changes", "invalid_argument", path=n, since_version=10**6)
        await s.ok("get_cell_history", path="m.ipynb", cell_id=b)
        await s.err("get_cell_history", "not_found", path=n, cell_id="ffffffff")

        tagged = await s.ok("update_cell_metadata", path=n, cell_id=a, metadata={"k": 1}, add_tags=["t"])
        assert tagged["metadata"] == {"k": 1, "tags": ["t"]}, tagged
        same = await s.ok("update_cell_metadata", path=n, cell_id=a, add_tags=["t"])
        assert same["changed"] is False, same
        await s.err("update_cell_metadata", "not_found", path=n, cell_id="ffffffff", add_tags=["t"])
        await s.ok("update_notebook_metadata", path=n, metadata={"k": 1})
        await s.err("update_notebook_metadata", "not_found", path="missing.ipynb", metadata={"k": 1})

        latest = await s.ok("get_notebook_changes", path=n)
        await s.ok("revert_cell", path=n, cell_id=a, to_version=latest["current_version"])
        await s.err("revert_cell", "invalid_argument", path=n, cell_id=a, to_version=10**6)

        await s.ok("replace_in_notebook", path=n, pattern="(x)", replacement="${1}y")
        dry = await s.ok("replace_in_notebook", path=n, pattern="q", replacement="r", dry_run=True)
        assert dry["changed"] is False and "version" not in dry, dry
        await s.err("replace_in_notebook", "invalid_argument", path=n, pattern="(", replacement="")
        await s.ok("diff_notebooks", path=n, other_path="m.ipynb")
        await s.err("diff_notebooks", "invalid_argument", path=n, version=10**6)
        await s.ok("snapshot_notebook", path=n, name="gone")
        await s.ok("delete_snapshot", path=n, name="gone")
        await s.err("delete_snapshot", "not_found", path=n, name="gone")

        await s.ok("create_notebook", path="to-rename.ipynb")
        await s.ok("rename_notebook", path="to-rename.ipynb", new_path="renamed.ipynb")
        await s.err("rename_notebook", "exists", path="renamed.ipynb", new_path=n)

        listed = {tool.name for tool in (await t.list_tools()).tools} - nbl.RUNS_TOOLS
        assert listed >= nbl.TOOLS
        missing = {(name, refused) for name in listed for refused in (False, True)} - s.calls
        assert not missing, f"never called here: {sorted(missing)}"
