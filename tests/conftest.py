"""Shared test fixtures: real shared data (skipped with a reason when absent) and workspaces."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The project's real-data folder (real e-prints, dumps, recordings); ASTRODATA_SHARED_DATA points elsewhere.
SHARED_DATA = Path(os.environ.get("ASTRODATA_SHARED_DATA") or ROOT.parent / "shared" / "data")
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_ABSENT = (f"real-data tests: {SHARED_DATA} is absent (the maintainers' shared data folder; "
                 "the tests on the repository's own fixtures still run)")


def shared(*parts: str) -> Path:
    """Path into ../shared/data; skips the calling test when it is absent, with one reason for all
    such tests, so pytest's summary folds them into a single line."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(SHARED_ABSENT if not SHARED_DATA.exists() else f"needs {path} (absent in this checkout)")
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Skips for an absent shared-data folder all report one location, so `-ra` prints one line
    (`SKIPPED [N] ...`) instead of one line per test."""
    report = (yield).get_result()
    if report.skipped and isinstance(report.longrepr, tuple) and SHARED_ABSENT in str(report.longrepr[2]):
        report.longrepr = (str(Path(__file__).relative_to(ROOT)), shared.__code__.co_firstlineno,
                           report.longrepr[2])


@pytest.fixture
def workspace(tmp_path):
    from astrodata.core.workspace import Workspace

    ws = Workspace(tmp_path / "work")
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    from astrodata.core.models import embedded_model_path

    return embedded_model_path()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(model_dir: Path, log_path: Path, timeout_s: float = 240) -> tuple[subprocess.Popen, str]:
    """A real `transformers serve` of `model_dir` on 127.0.0.1 (float32: the stored bf16 weights prefill
    ~3x slower on CPUs without bf16 units), its output unbuffered into `log_path` (uvicorn's access
    lines count the replies it served); returns (process, URL) once /health answers. Skips the test
    when the serving extra is absent."""
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if exe is None or importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("transformers serve needs the serving extra: pip install 'transformers[serving]'")
    port = free_port()
    with log_path.open("w") as log:
        proc = subprocess.Popen([exe, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                                 "--device", "cpu", "--dtype", "float32"], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"transformers serve exited early; see {log_path}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(1)
    stop(proc)
    pytest.fail(f"transformers serve not ready after {timeout_s:.0f} s; see {log_path}")


def stop(proc: subprocess.Popen) -> None:
    """Stop a process we started, by its PID: terminate, then kill after 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def served_model(embedded_model, tmp_path_factory):
    """URL of a real `transformers serve` of the embedded model on 127.0.0.1, started once per session."""
    proc, url = start_serve(embedded_model, tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        yield url
    finally:
        stop(proc)
