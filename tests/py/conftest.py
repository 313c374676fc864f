"""Fixtures for the nbledger Python interop suite."""

from __future__ import annotations

import os

import pytest

import nbl


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def nbledger_binary():
    path = nbl.binary()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.exit(
            f"nbledger binary not found at {path}: build it with `cargo build --bin nbledger` "
            "or point NBLEDGER_BIN at it",
            returncode=2,
        )
    return path


@pytest.fixture
def root(tmp_path):
    """A fresh workspace root for one server (its log lands in root/.nbledger)."""
    r = tmp_path / "root"
    r.mkdir()
    return r


@pytest.fixture(scope="session")
def fixtures_dir():
    d = nbl.fixtures_dir()
    # A missing folder fails rather than skips: a skip would hide this
    # coverage (the notebooks ship in tests/fixtures).
    if not d.is_dir():
        pytest.fail(
            f"nbformat test notebooks not found at {d}; set NBLEDGER_FIXTURES to the folder "
            "holding test4.ipynb etc."
        )
    return d
