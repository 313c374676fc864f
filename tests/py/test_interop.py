"""Interop with the official Python MCP SDK (mcp 2.3.0) over stdio and
streamable HTTP, one server process or several on one root.

Every `call_tool` here also goes through the SDK's own check of
structuredContent against the tool's declared outputSchema (it raises on a
mismatch), and a tool refusal must come back as an `isError` result, never
as a JSON-RPC error (which the SDK would raise as `MCPError`).
"""

from __future__ import annotations

import json

import pytest
from mcp import MCPError

import nbl
from mcp.shared._httpx_utils import create_mcp_http_client

pytestmark = pytest.mark.anyio

HEX8 = nbl.NEW_CELL_ID_RE


async def check_tool_listing(t: nbl.Tools) -> None:
    listing = await t.list_tools()
    tools = {tool.name: tool for tool in listing.tools}
    missing = nbl.TOOLS - tools.keys()
    assert not missing, f"tools missing from tools/list: {sorted(missing)}"
    for name, tool in tools.items():
        assert tool.description, f"{name} has no description"
        assert tool.input_schema.get("type") == "object", (name, tool.input_schema)
        schema = tool.output_schema
        assert isinstance(schema, dict) and schema.get("type") == "object", f"{name}: outputSchema {schema!r}"
        ann = tool.annotations
        assert ann is not None, f"{name} has no annotations"
        assert ann.open_world_hint is (name in nbl.OPEN_WORLD_TOOLS), f"{name}: openWorldHint {ann.open_world_hint!r}"
        if name in nbl.READ_TOOLS:
            assert ann.read_only_hint is True, f"{name} should be readOnlyHint"
        elif name in nbl.TOOLS:
            assert not ann.read_only_hint, f"{name} writes but says readOnlyHint"
            assert ann.destructive_hint is not None, f"{name}: a write tool should declare destructiveHint"
    # The properties of the core tools' input schemas name what the contract documents.
    props = tools["update_cell"].input_schema.get("properties", {})
    for arg in ("path", "cell_id", "index", "source", "expected_version", "force", "client_name"):
        assert arg in props, f"update_cell input schema lacks {arg}: {sorted(props)}"


async def full_flow(t: nbl.Tools, declared_name: str) -> None:
    """create, insert, update (with a compare-and-swap conflict), change type,
    delete, read back, outline, search, list, refusals. Versions are global and
    gap-free, starting at 1, in this fresh root."""
    created = await t.ok(
        "create_notebook",
        path="nb.ipynb",
        cells=[
            {"source": "# Title\n\nSome *text*.", "cell_type": "markdown"},
            {"source": "x = 1\nprint(x)"},
        ],
        kernel_name="python3",
    )
    assert created["path"] == "nb.ipynb"
    assert created["version"] == 1
    assert created["changed"] is True
    # No client_name given: the client's declared name (clientInfo.name) is used.
    assert created["client_name"] == declared_name
    md_id, code_id = created["cell_ids"]
    assert HEX8.match(md_id) and HEX8.match(code_id) and md_id != code_id

    again = await t.err("create_notebook", path="nb.ipynb")
    assert again["code"] == "exists"

    ins = await t.ok("insert_cell", path="nb.ipynb", source="y = 2", after_cell_id=md_id, client_name="agent-a")
    assert ins["index"] == 1 and ins["version"] == 2 and HEX8.match(ins["cell_id"])
    assert ins["client_name"] == "agent-a"  # every write echoes who it acted as
    new_id = ins["cell_id"]

    # A unique prefix of 4+ characters addresses a cell.
    upd = await t.ok(
        "update_cell", path="nb.ipynb", cell_id=new_id[:6], source="y = 3", expected_version=2, client_name="agent-b"
    )
    assert upd == {**upd, "cell_id": new_id, "index": 1, "version": 3, "client_name": "agent-b"}

    conflict = await t.err(
        "update_cell", path="nb.ipynb", cell_id=new_id, source="y = 4", expected_version=2, client_name="agent-a"
    )
    assert conflict["code"] == "version_conflict"
    assert conflict["current"]["last_version"] == 3
    assert conflict["current"]["source"] == "y = 3"

    # An earlier read's version of an unchanged cell passes the compare-and-swap.
    upd2 = await t.ok("update_cell", path="nb.ipynb", index=2, source="x = 10\nprint(x)", expected_version=3)
    assert upd2["cell_id"] == code_id and upd2["version"] == 4

    ct = await t.ok("change_cell_type", path="nb.ipynb", cell_id=new_id, cell_type="raw")
    assert ct["cell_id"] == new_id and ct["version"] == 5

    bins = await t.ok(
        "batch_insert_cells",
        path="nb.ipynb",
        cells=[{"source": "a = 1"}, {"source": "## Section", "cell_type": "markdown"}],
    )
    assert bins["version"] == 6 and len(bins["cell_ids"]) == 2
    a_id, sec_id = bins["cell_ids"]

    bupd = await t.ok(
        "batch_update_cells",
        path="nb.ipynb",
        updates=[{"cell_id": a_id, "source": "a = 2"}, {"index": 4, "source": "## Section 2", "expected_version": 6}],
    )
    assert bupd["version"] == 7 and bupd["cell_ids"] == [a_id, sec_id]

    deleted = await t.ok("delete_cell", path="nb.ipynb", cell_id=new_id)
    assert deleted["deleted"] == [new_id] and deleted["version"] == 8

    content = await t.ok("get_notebook_content", path="nb.ipynb")
    assert content["path"] == "nb.ipynb"
    assert content["current_version"] == 8
    cells = content["cells"]
    assert [c["cell_id"] for c in cells] == [md_id, code_id, a_id, sec_id]
    assert [c["index"] for c in cells] == [0, 1, 2, 3]
    assert [c["cell_type"] for c in cells] == ["markdown", "code", "code", "markdown"]
    assert [c["source"] for c in cells] == ["# Title\n\nSome *text*.", "x = 10\nprint(x)", "a = 2", "## Section 2"]
    assert [c["last_version"] for c in cells] == [1, 4, 7, 7]

    some = await t.ok("get_notebook_content", path="nb.ipynb", cell_type="markdown")
    assert [c["cell_id"] for c in some["cells"]] == [md_id, sec_id]
    some = await t.ok("get_notebook_content", path="nb.ipynb", start=1, end=2)
    assert [c["cell_id"] for c in some["cells"]] == [code_id, a_id]

    outline = await t.ok("get_notebook_outline", path="nb.ipynb")
    assert [c["cell_id"] for c in outline["cells"]] == [md_id, code_id, a_id, sec_id]
    assert outline["current_version"] == 8

    found = await t.ok("search_notebook", path="nb.ipynb", pattern=r"print\(x\)")
    # line and column are 1-based (column counts characters).
    assert [(m["cell_id"], m["index"], m["line"], m["column"]) for m in found["matches"]] == [(code_id, 1, 2, 1)], found
    assert found["matches"][0]["in"] == "source"
    assert found["matches"][0]["text"] == "print(x)"

    listed = await t.ok("list_notebooks")
    entry = {n["path"]: n for n in listed["notebooks"]}["nb.ipynb"]
    assert entry["cell_count"] == 4 and entry["current_version"] == 8 and entry["imported"] is True

    # Refusals: isError results with a code, never JSON-RPC errors; nothing changes.
    nf = await t.err("update_cell", path="nb.ipynb", cell_id="ffffffff", source="nope")
    assert nf["code"] == "not_found"
    nf = await t.err("update_cell", path="nb.ipynb", index=99, source="nope")
    assert nf["code"] == "not_found"
    nf = await t.err("get_notebook_content", path="missing.ipynb")
    assert nf["code"] == "not_found"
    bad = await t.err("insert_cell", path="nb.ipynb", source="z", colour="blue")
    assert bad["code"] == "invalid_argument" and "colour" in bad["message"]
    bad = await t.err("update_cell", path="nb.ipynb", cell_id=md_id, index=0, source="both")
    assert bad["code"] == "invalid_argument"
    bad = await t.err("change_cell_type", path="nb.ipynb", cell_id=md_id, cell_type="sql")
    assert bad["code"] == "invalid_argument"
    out = await t.err("create_notebook", path="../escape.ipynb")
    assert out["code"] == "outside_root"
    # An atomic batch: one bad update refuses the whole call.
    batch = await t.err(
        "batch_update_cells",
        path="nb.ipynb",
        updates=[{"cell_id": a_id, "source": "a = 99"}, {"cell_id": "deadbeef", "source": "?"}],
    )
    assert batch["code"] == "not_found"

    after = await t.ok("get_notebook_content", path="nb.ipynb")
    assert after == content, "a refused call changed the notebook"


async def test_classic_client_session_legacy_handshake(root):
    async with nbl.legacy_session(root, client_name="pytest-legacy") as t:
        assert t.init.protocol_version == "2025-11-25"
        assert t.init.server_info.name == "nbledger"
        assert t.init.capabilities.tools is not None
        await check_tool_listing(t)

        # The raw result shape, as the SDK parsed it off the wire.
        res = await t.raw("create_notebook", path="raw.ipynb", cells=[{"source": "1 + 1"}])
        assert res.is_error is False
        sc = res.structured_content
        assert set(sc) >= {"path", "cell_ids", "version", "changed", "client_name"}
        assert [c.type for c in res.content][:1] == ["text"]
        assert json.loads(res.content[0].text.split("\n", 1)[1]) == sc

        # An error case is a result, not a JSON-RPC exception.
        try:
            res = await t.raw("update_cell", path="raw.ipynb", cell_id="ffffffff", source="x")
        except MCPError as e:  # pragma: no cover - the failure being tested for
            pytest.fail(f"a tool refusal came back as a JSON-RPC error: {e!r}")
        assert res.is_error is True
        assert res.structured_content["error"]["code"] == "not_found"
        nbl.check_text_mirrors_structured(res)

    # A fresh root for the full flow (versions start at 1 there).
    second = root.parent / "second"
    second.mkdir()
    async with nbl.legacy_session(second, client_name="pytest-legacy") as t:
        await full_flow(t, "pytest-legacy")


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_client_over_stdio(root, mode):
    """`mcp.Client` spawns the server itself (StdioServerParameters). With
    mode="legacy" it runs the 2025-11-25 initialize handshake; with
    mode="2026-07-28" it adopts the stateless revision directly (no handshake,
    protocol version and clientInfo in every request's _meta)."""
    async with nbl.client_session(root, mode, client_name=f"pytest-{mode}") as t:
        assert t.peer.protocol_version == ("2025-11-25" if mode == "legacy" else mode)
        if mode == "legacy":
            assert t.peer.server_info is not None and t.peer.server_info.name == "nbledger"
        await check_tool_listing(t)
        await full_flow(t, f"pytest-{mode}")


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_client_over_http(root, mode):
    """`mcp.Client` on `serve --http` in both protocol eras, with the bearer
    token; without it the server answers 401 and the SDK cannot connect."""
    token = "py-token-42"
    with nbl.http_server(root, token) as url:
        with pytest.raises(MCPError):
            async with nbl.http_session(url, None, mode, "intruder") as t:
                await t.list_tools()
        async with create_mcp_http_client() as http:
            bare = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert bare.status_code == 401
        assert bare.headers.get("www-authenticate", "").startswith("Bearer")
        async with nbl.http_session(url, token, mode, f"pytest-http-{mode}") as t:
            if mode == "legacy":
                assert t.peer.protocol_version == "2025-11-25"
            await check_tool_listing(t)
            await full_flow(t, f"pytest-http-{mode}")


async def test_sdk_clients_each_with_their_own_server_share_one_log(root):
    """Two agents, each spawning its own stdio server on one root (and one
    more over HTTP): one log, one version sequence, each sees the others."""
    token = "py-token-7"
    with nbl.http_server(root, token) as url:
        async with nbl.client_session(root, "legacy", client_name="agent-a") as a:
            async with nbl.client_session(root, "2026-07-28", client_name="agent-b") as b:
                async with nbl.http_session(url, token, "2026-07-28", "agent-c") as c:
                    made = await a.ok("create_notebook", path="shared.ipynb")
                    assert made["version"] == 1
                    seen = set()
                    for i, t in enumerate([b, c, a, b, c]):
                        r = await t.ok("insert_cell", path="shared.ipynb", source=f"x = {i}")
                        seen.add(r["version"])
                    assert seen == {2, 3, 4, 5, 6}
                    feed = await c.ok("get_notebook_changes", path="shared.ipynb", since_version=0)
                    assert [ch["version"] for ch in feed["changes"]] == [1, 2, 3, 4, 5, 6]
                    assert [ch["client_name"] for ch in feed["changes"]] == [
                        "agent-a", "agent-b", "agent-c", "agent-a", "agent-b", "agent-c"]
                    content = await b.ok("get_notebook_content", path="shared.ipynb")
                    assert [cell["source"] for cell in content["cells"]] == [f"x = {i}" for i in range(5)]
    nbl.check_written_notebook(root / "shared.ipynb", nbformat_writes_equal=True)


async def test_forced_writes_moves_copies_and_history_validate_against_the_lean_schemas(root):
    """The result shapes the lean output schemas type precisely (a forced
    write's overrode_lock(s), a feed entry's mapping, a history entry's
    moved_from / moved_to / copied_from) pass the SDK's own validation."""
    async with nbl.legacy_session(root, client_name="pytest-shapes") as t:
        a_ids = (await t.ok("create_notebook", path="a.ipynb", cells=[{"source": "a0"}, {"source": "a1"}, {"source": "a2"}]))["cell_ids"]
        await t.ok("create_notebook", path="b.ipynb", cells=[{"source": "b0"}])
        await t.ok("lock_cells", path="a.ipynb", cell_ids=a_ids[:2], client_name="holder")
        one = await t.ok("update_cell", path="a.ipynb", cell_id=a_ids[0], source="x", force=True, client_name="writer")
        assert one["overrode_lock"] == "holder"
        await t.ok("lock_cells", path="a.ipynb", cell_ids=[a_ids[2]], client_name="other")
        many = await t.ok(
            "batch_update_cells",
            path="a.ipynb",
            updates=[{"cell_id": a_ids[0], "source": "y"}, {"cell_id": a_ids[2], "source": "z"}],
            force=True,
            client_name="writer",
        )
        assert {o["owner"] for o in many["overrode_locks"]} == {"holder", "other"}
        copied = await t.ok("copy_cells", source_path="a.ipynb", dest_path="b.ipynb", cell_ids=[a_ids[2]], client_name="writer")
        moved = await t.ok(
            "move_cells", source_path="a.ipynb", dest_path="b.ipynb", cell_ids=[a_ids[1]], force=True, client_name="writer"
        )
        assert moved["overrode_lock"] == "holder"
        feed = await t.ok("get_notebook_changes", path="b.ipynb")
        assert any(c.get("mapping") for c in feed["changes"]), feed
        feed = await t.ok("get_notebook_changes", path="a.ipynb")
        assert any(c.get("overrode_locks") for c in feed["changes"]), feed
        there = await t.ok("get_cell_history", path="b.ipynb", cell_id=moved["cell_ids"][0])
        assert any(e.get("moved_from") for e in there["entries"]), there
        gone = await t.ok("get_cell_history", path="a.ipynb", cell_id=a_ids[1])
        assert gone["entries"][-1]["moved_to"] == {"path": "b.ipynb", "cell_id": a_ids[1]}, gone
        copy = await t.ok("get_cell_history", path="b.ipynb", cell_id=copied["cell_ids"][0])
        assert copy["entries"][-1]["copied_from"] == {"path": "a.ipynb", "cell_id": a_ids[2]}
        unlocked = await t.ok("unlock_cells", path="a.ipynb", force=True, cell_ids=[a_ids[0]], client_name="writer")
        assert unlocked["released"] == [a_ids[0]] and unlocked["overrode_lock"] == "holder"
        await t.ok("list_locks")
