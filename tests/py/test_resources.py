"""Notebook resources (§10) through the official Python MCP SDK: listed and
read as `nbledger:///PATH` (`application/x-ipynb+json`), and a
`resources/subscribe` subscriber is sent `notifications/resources/updated`
when another process changes the notebook."""

from __future__ import annotations

import json

import anyio
import pytest
from mcp import ClientSession, types
from mcp import stdio_client

import nbl

pytestmark = pytest.mark.anyio


# The 2025-11-25 era's subscription, which this test is about.
@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")
async def test_a_subscriber_hears_of_changes_made_by_another_process(root):
    updates: list[str] = []
    got = anyio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))
            got.set()

    with anyio.fail_after(nbl.SESSION_TIMEOUT):
        async with stdio_client(nbl.server_params(root)) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as watcher:
                await watcher.initialize()
                async with nbl.legacy_session(root, "writer") as w:
                    created = await w.ok("create_notebook", path="n.ipynb", cells=[{"source": "x = 1"}])
                    listed = await watcher.list_resources()
                    by_uri = {str(r.uri): r for r in listed.resources}
                    assert by_uri["nbledger:///n.ipynb"].mime_type == "application/x-ipynb+json"
                    read_back = await watcher.read_resource("nbledger:///n.ipynb")
                    nb = json.loads(read_back.contents[0].text)
                    assert nb["cells"][0]["source"] == ["x = 1"], nb

                    await watcher.subscribe_resource("nbledger:///n.ipynb")
                    await w.ok("update_cell", path="n.ipynb", cell_id=created["cell_ids"][0], source="x = 2")
                    with anyio.fail_after(10):
                        await got.wait()
                    assert updates == ["nbledger:///n.ipynb"], updates
