"""Helpers shared by the Python interop suite: where things are, how to talk
to an `nbledger serve` over stdio with the official MCP SDK, and how to check
a notebook file with Python nbformat."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import threading
import warnings
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import anyio
import nbformat
from jsonschema import Draft202012Validator
from mcp import Client, ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import CallToolResult, Implementation

REPO = Path(__file__).resolve().parents[2]

# Seconds any single MCP request may take, and a whole session.
REQUEST_TIMEOUT = 20.0
SESSION_TIMEOUT = 60.0

TOOLS = {
    "create_notebook",
    "insert_cell",
    "batch_insert_cells",
    "update_cell",
    "batch_update_cells",
    "delete_cell",
    "change_cell_type",
    "get_notebook_content",
    "get_notebook_outline",
    "search_notebook",
    "list_notebooks",
}
READ_TOOLS = {"get_notebook_content", "get_notebook_outline", "search_notebook", "list_notebooks"}
# Tools that run arbitrary code: openWorldHint true (contract §8.13).
OPEN_WORLD_TOOLS = {"execute_cell", "execute_code"}
# The `runs` set needs a Jupyter kernel; tests/schemas.rs and tests/runs.rs
# call these on a real one, so this suite leaves them out.
RUNS_TOOLS = {
    "execute_cell",
    "execute_code",
    "get_run",
    "list_runs",
    "list_kernels",
    "interrupt_kernel",
    "restart_kernel",
    "shutdown_kernel",
    "clear_outputs",
}

CELL_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NEW_CELL_ID_RE = re.compile(r"^[0-9a-f]{8}$")


def binary() -> Path:
    return Path(os.environ.get("NBLEDGER_BIN") or REPO / "target" / "debug" / "nbledger")


def fixtures_dir() -> Path:
    return Path(os.environ.get("NBLEDGER_FIXTURES") or REPO / "tests" / "fixtures" / "nbformat")


def server_params(root: Path) -> StdioServerParameters:
    env = {"NBLEDGER_LOG": os.environ.get("NBLEDGER_LOG", "warn")}
    return StdioServerParameters(
        command=str(binary()), args=["serve", "--root", str(root)], env=env, cwd=str(root)
    )


def _leaf(exc: BaseException) -> BaseException:
    """The one real error inside nested task-group exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def unwrap_groups() -> AsyncIterator[None]:
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = _leaf(group)
        if leaf is group:
            raise
        raise leaf from None


@asynccontextmanager
async def legacy_session(root: Path, client_name: str = "pytest") -> AsyncIterator["Tools"]:
    """The classic API: stdio_client + ClientSession + the 2025-11-25 initialize handshake."""
    async with unwrap_groups():
        with anyio.fail_after(SESSION_TIMEOUT):
            async with stdio_client(server_params(root)) as (read, write):
                async with ClientSession(
                    read,
                    write,
                    read_timeout_seconds=REQUEST_TIMEOUT,
                    client_info=Implementation(name=client_name, version="0.0.1"),
                ) as session:
                    tools = Tools(session)
                    tools.init = await session.initialize()
                    yield tools


@asynccontextmanager
async def client_session(root: Path, mode: str, client_name: str = "pytest") -> AsyncIterator["Tools"]:
    """The new high-level API: `mcp.Client` spawning the server over stdio, in the given mode."""
    async with unwrap_groups():
        with anyio.fail_after(SESSION_TIMEOUT):
            async with Client(
                server_params(root),
                mode=mode,
                read_timeout_seconds=REQUEST_TIMEOUT,
                client_info=Implementation(name=client_name, version="0.0.1"),
            ) as client:
                yield Tools(client)


@contextmanager
def http_server(root: Path, token: str) -> Iterator[str]:
    """`nbledger serve --http` on a free loopback port with a bearer token;
    yields its /mcp URL. stderr is drained so the server can always log."""
    env = dict(os.environ, NBLEDGER_TOKEN=token, NBLEDGER_LOG=os.environ.get("NBLEDGER_LOG", "warn"))
    proc = subprocess.Popen(
        [str(binary()), "serve", "--http", "127.0.0.1:0", "--root", str(root)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp"), line
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@asynccontextmanager
async def http_session(url: str, token: str | None, mode: str, client_name: str) -> AsyncIterator["Tools"]:
    """`mcp.Client` over streamable HTTP, with the bearer token when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with unwrap_groups():
        with anyio.fail_after(SESSION_TIMEOUT):
            async with create_mcp_http_client(headers=headers) as http:
                async with Client(
                    streamable_http_client(url, http_client=http),
                    mode=mode,
                    read_timeout_seconds=REQUEST_TIMEOUT,
                    client_info=Implementation(name=client_name, version="0.0.1"),
                ) as client:
                    yield Tools(client)


class ToolError(AssertionError):
    pass


class Tools:
    """Thin wrapper: `ok` asserts success and returns structuredContent,
    `err` asserts an isError result and returns structuredContent.error."""

    def __init__(self, peer: ClientSession | Client):
        self.peer = peer
        self.init = None
        self._schemas: dict[str, Draft202012Validator] | None = None

    async def list_tools(self):
        return await self.peer.list_tools()

    # Positional-only: a tool's own `name` argument (snapshots) must not clash.
    async def raw(self, name: str, /, **arguments: Any) -> CallToolResult:
        # A JSON-RPC error would raise MCPError here: tool refusals must not.
        # The SDK checks a success against the tool's outputSchema; a
        # refusal is checked here, since every outputSchema allows `error`.
        res = await self.peer.call_tool(name, arguments)
        if res.is_error:
            check_output_schema(name, (await self.output_schemas())[name], res.structured_content)
        return res

    async def output_schemas(self) -> dict[str, Draft202012Validator]:
        """Each tool's outputSchema as a validator, listed once per session."""
        if self._schemas is None:
            listing = await self.peer.list_tools()
            self._schemas = {t.name: Draft202012Validator(t.output_schema) for t in listing.tools}
        return self._schemas

    async def ok(self, name: str, /, **arguments: Any) -> dict[str, Any]:
        res = await self.raw(name, **arguments)
        if res.is_error:
            raise ToolError(f"{name}({arguments!r}) failed: {res.structured_content!r}")
        check_text_mirrors_structured(res)
        return res.structured_content

    async def err(self, name: str, /, **arguments: Any) -> dict[str, Any]:
        res = await self.raw(name, **arguments)
        assert res.is_error is True, f"{name}({arguments!r}) should have failed, got {res.structured_content!r}"
        check_text_mirrors_structured(res)
        sc = res.structured_content
        assert isinstance(sc, dict) and isinstance(sc.get("error"), dict), sc
        error = sc["error"]
        assert isinstance(error.get("code"), str) and error["code"], error
        assert isinstance(error.get("message"), str) and error["message"], error
        return error


def check_output_schema(name: str, validator: Draft202012Validator, value: Any) -> None:
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    assert not errors, f"{name}: structuredContent {value!r} does not match its outputSchema: " + "; ".join(
        f"{e.message} at /{'/'.join(map(str, e.path))}" for e in errors
    )


def check_text_mirrors_structured(res: CallToolResult) -> None:
    """Every result: structuredContent, plus a text block whose first line is a
    summary and whose second line on is the same JSON."""
    sc = res.structured_content
    assert isinstance(sc, dict), f"no structuredContent in {res!r}"
    texts = [c for c in res.content if c.type == "text"]
    assert texts, f"no text content in {res!r}"
    lines = texts[0].text.split("\n")
    assert len(lines) >= 2, f"text has no second line: {texts[0].text!r}"
    summary, second, rest = lines[0], lines[1], lines[2:]
    assert summary.strip() and not summary.lstrip().startswith("{"), f"bad summary line {summary!r}"
    assert json.loads(second) == sc, f"text JSON {second!r} differs from structuredContent {sc!r}"
    assert not "".join(rest).strip(), f"text has more than two lines: {texts[0].text!r}"


# ---------------------------------------------------------------- nbformat checks


def jupyter_layout(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def strict_validate(path: Path) -> nbformat.NotebookNode:
    """Read with nbformat (no conversion) and validate; nbformat's silent
    repairs (duplicate ids) count as failures here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nb = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
        nbformat.validate(copy.deepcopy(nb))
    return nb


def check_written_notebook(path: Path, *, nbformat_writes_equal: bool) -> dict[str, Any]:
    """The checks every file nbledger writes must pass. Returns the parsed JSON."""
    raw = path.read_text(encoding="utf-8")
    data = json.loads(raw)
    nb = strict_validate(path)
    assert data["nbformat"] == 4, path
    assert data["nbformat_minor"] >= 5, f"{path}: nbformat_minor {data['nbformat_minor']} < 5"
    ids = [c.get("id") for c in data["cells"]]
    assert all(isinstance(i, str) and CELL_ID_RE.match(i) for i in ids), f"{path}: bad ids {ids}"
    assert len(set(ids)) == len(ids), f"{path}: duplicate ids {ids}"
    for c in data["cells"]:
        # nbformat's line list (str.splitlines(keepends=True)): no trailing "".
        if "source" not in c and c.get("cell_type") not in ("code", "markdown", "raw"):
            continue  # a cell type from a newer minor version, kept as it was
        src = c["source"]
        assert isinstance(src, list), f"{path}: source not a line list: {src!r}"
        assert src == "".join(src).splitlines(True), f"{path}: source not split as nbformat does: {src!r}"
    assert raw == jupyter_layout(data), f"{path} is not in Jupyter's layout (indent=1, sorted keys, raw non-ASCII, final newline)"
    if nbformat_writes_equal:
        assert raw == nbformat.writes(nb) + "\n", f"{path} differs from nbformat.writes() of itself"
    return data


def join(value: Any) -> Any:
    """Multi-line string shapes: a list of strings becomes one string."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return value


def normalize_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """A cell without its id, with nbformat's multi-line fields joined."""
    c = copy.deepcopy(cell)
    c.pop("id", None)
    if "source" in c:
        c["source"] = join(c["source"])
    for att in (c.get("attachments") or {}).values():
        for mime in list(att):
            att[mime] = join(att[mime])
    for out in c.get("outputs") or []:
        if out.get("output_type") == "stream":
            out["text"] = join(out.get("text"))
        for mime in list(out.get("data") or {}):
            out["data"][mime] = join(out["data"][mime])
    return c
