"""Shared test fixtures: real shared data (skipped with a reason when absent) and workspaces."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared(*parts: str) -> Path:
    """Path into ../shared/data; skips the calling test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the shared real-data folder {path} (absent in this checkout)")
    return path


@pytest.fixture
def workspace(tmp_path):
    from astrodata.workspace import Workspace

    ws = Workspace(tmp_path / "work")
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    from astrodata.models import embedded_model_path

    return embedded_model_path()
