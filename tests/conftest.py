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
