"""A simulated person in a JupyterLab notebook room (tests/room.rs).

    person.py URL TOKEN PATH NAME

Joins the collaboration room of notebook PATH on the Jupyter server at URL
as a pycrdt peer (the same websocket and y-websocket messages JupyterLab's
tab uses), with an awareness entry for user NAME, then takes one JSON
command per line on stdin and answers each with one JSON line on stdout:

- {"op": "cells"}: the room's cells, [{"id", "cell_type", "source"}].
- {"op": "wait", "cell": ID, "contains": TEXT, "timeout": S}: waits until
  cell ID's source contains TEXT (or a cell with id ID exists when TEXT is
  empty); answers {"ok", "ms"} (how long it waited).
- {"op": "wait_text", "contains": TEXT, "timeout": S}: as wait, any cell.
- {"op": "type", "cell": ID, "text": T, "min_ms": A, "max_ms": B}: starts
  typing T into cell ID one character at a time at its end, every A..B ms.
- {"op": "typed"}: waits for the typing to end; answers {"count"}.
- {"op": "cursor", "cell": ID}: puts the cursor at the start of cell ID, as
  JupyterLab's editor does (awareness `cursors`, Yjs relative positions).
- {"op": "insert", "index": I, "id": ID, "source": S}: inserts a code cell
  as JupyterLab does (jupyter_ydoc's cell map).
- {"op": "delete", "cell": ID}: deletes a cell.
- {"op": "peers"}: the user names in the room's awareness (others').
- {"op": "save"}: asks Jupyter to save now.
- {"op": "quit"}.
"""

import asyncio
import json
import random
import sys
import threading
import time

from pycrdt import (
    Array,
    Awareness,
    Doc,
    Map,
    Text,
    YMessageType,
    YSyncMessageType,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    handle_sync_message,
    read_message,
)
from websockets.asyncio.client import connect


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def encode_var_uint(n):
    b = bytearray()
    while True:
        x = n & 0x7F
        n >>= 7
        if n:
            b.append(x | 0x80)
        else:
            b.append(x)
            return bytes(b)


def encode_string(s):
    data = s.encode()
    return encode_var_uint(len(data)) + data


class Person:
    def __init__(self, url, token, path, name):
        self.url = url.rstrip("/")
        self.token = token
        self.path = path
        self.name = name
        self.doc = Doc()
        self.cells = self.doc.get("cells", type=Array)
        self.meta = self.doc.get("meta", type=Map)
        self.awareness = Awareness(self.doc)
        self.ws = None
        self.synced = asyncio.Event()
        self.typing = None
        self.typed = 0
        self.changed = asyncio.Event()

    async def session(self):
        import urllib.request

        req = urllib.request.Request(
            f"{self.url}/api/collaboration/session/{self.path}",
            data=b'{"format":"json","type":"notebook"}',
            method="PUT",
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(req, timeout=10).read())
        return json.loads(body)

    async def join(self):
        s = await self.session()
        ws_url = self.url.replace("http://", "ws://", 1)
        room = f"{ws_url}/api/collaboration/room/json:notebook:{s['fileId']}?sessionId={s['sessionId']}"
        self.ws = await connect(room, additional_headers={"Authorization": f"token {self.token}"}, max_size=None)
        self.doc.observe(self.on_update)
        await self.ws.send(create_sync_message(self.doc))
        self.awareness.set_local_state(
            {"user": {"username": self.name, "name": self.name, "display_name": self.name, "initials": "P", "color": "#f00"}}
        )
        await self.ws.send(create_awareness_message(self.awareness.encode_awareness_update([self.doc.client_id])))
        asyncio.create_task(self.reader())
        asyncio.create_task(self.renew_awareness())
        await asyncio.wait_for(self.synced.wait(), 15)

    async def renew_awareness(self):
        # JupyterLab renews its entry every 15 s; a peer that joins later
        # learns who is here from the next renewal. Sooner here, so tests
        # need not wait.
        while True:
            await asyncio.sleep(1)
            self.awareness.set_local_state(self.awareness.get_local_state())
            try:
                await self.ws.send(create_awareness_message(self.awareness.encode_awareness_update([self.doc.client_id])))
            except Exception:
                return

    def on_update(self, event):
        if getattr(self, "_local", False):
            asyncio.get_event_loop().create_task(self.ws.send(create_update_message(event.update)))

    async def reader(self):
        async for msg in self.ws:
            if isinstance(msg, str) or not msg:
                continue
            if msg[0] == YMessageType.SYNC:
                if msg[1] == YSyncMessageType.SYNC_STEP2:
                    self.synced.set()
                reply = handle_sync_message(msg[1:], self.doc)
                if reply is not None:
                    await self.ws.send(reply)
                self.changed.set()
            elif msg[0] == YMessageType.AWARENESS:
                self.awareness.apply_awareness_update(read_message(msg[1:]), "remote")
                self.changed.set()

    def local(self, f):
        self._local = True
        try:
            with self.doc.transaction(origin="person"):
                f()
        finally:
            self._local = False

    def find(self, cell_id):
        for c in self.cells:
            if c.get("id") == cell_id:
                return c
        return None

    def snapshot(self):
        return [
            {"id": c.get("id"), "cell_type": c.get("cell_type"), "source": str(c.get("source", ""))}
            for c in self.cells
        ]

    async def wait(self, pred, timeout):
        start = time.monotonic()
        while True:
            if pred():
                return {"ok": True, "ms": (time.monotonic() - start) * 1000}
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                return {"ok": False, "ms": timeout * 1000, "cells": self.snapshot()}
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(left, 0.05))
            except asyncio.TimeoutError:
                pass

    async def type_into(self, cell_id, text, lo, hi):
        for ch in text:
            cell = self.find(cell_id)
            if cell is None:
                break
            src = cell["source"]
            self.local(lambda: src.insert(len(src), ch))
            self.typed += 1
            await asyncio.sleep(random.uniform(lo, hi) / 1000)

    async def save(self):
        # Jupyter's RAW message "save" with a request id.
        await self.ws.send(bytes([2]) + encode_string("save") + encode_var_uint(1))

    async def command(self, c):
        op = c["op"]
        if op == "cells":
            return {"cells": self.snapshot()}
        if op == "wait":
            def pred():
                cell = self.find(c["cell"])
                return cell is not None and c.get("contains", "") in str(cell["source"])
            return await self.wait(pred, c.get("timeout", 10))
        if op == "wait_text":
            return await self.wait(lambda: any(c["contains"] in str(x.get("source", "")) for x in self.cells), c.get("timeout", 10))
        if op == "type":
            self.typed = 0
            self.typing = asyncio.create_task(self.type_into(c["cell"], c["text"], c.get("min_ms", 50), c.get("max_ms", 100)))
            return {"ok": True}
        if op == "typed":
            if self.typing:
                await self.typing
            return {"ok": True, "count": self.typed}
        if op == "cursor":
            src = self.find(c["cell"])["source"]
            pos = src.sticky_index(0).to_json()
            self.awareness.set_local_state_field(
                "cursors", [{"anchor": pos, "head": pos, "primary": True, "empty": True}]
            )
            await self.ws.send(create_awareness_message(self.awareness.encode_awareness_update([self.doc.client_id])))
            return {"ok": True, "anchor": pos}
        if op == "insert":
            cell = Map(
                {
                    "id": c["id"],
                    "cell_type": "code",
                    "source": Text(c.get("source", "")),
                    "metadata": Map(),
                    "outputs": Array(),
                    "execution_count": None,
                    "execution_state": "idle",
                }
            )
            self.local(lambda: self.cells.insert(c["index"], cell))
            return {"ok": True}
        if op == "delete":
            for i, x in enumerate(self.cells):
                if x.get("id") == c["cell"]:
                    self.local(lambda: self.cells.pop(i))
                    return {"ok": True}
            return {"ok": False}
        if op == "peers":
            names = [
                st.get("user", {}).get("username")
                for cid, st in self.awareness.states.items()
                if cid != self.doc.client_id and st
            ]
            return {"peers": names}
        if op == "save":
            await self.save()
            return {"ok": True}
        if op == "quit":
            return None
        return {"error": f"unknown op {op}"}


async def main():
    url, token, path, name = sys.argv[1:5]
    p = Person(url, token, path, name)
    await p.join()
    out({"ready": True, "client_id": p.doc.client_id})
    loop = asyncio.get_running_loop()
    lines = asyncio.Queue()

    def read_stdin():
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read_stdin, daemon=True).start()
    while True:
        line = await lines.get()
        if line is None:
            break
        if not line.strip():
            continue
        answer = await p.command(json.loads(line))
        if answer is None:
            break
        out(answer)
    await p.ws.close()


if __name__ == "__main__":
    asyncio.run(main())
