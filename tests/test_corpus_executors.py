"""Corpus phase 1 on other executors: a real local Ray cluster (results identical to the local build,
also when a shard's worker is killed mid-run) and the SLURM scripts (their text: sbatch is absent here)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from astrodata.corpus.build import CorpusOptions, build_corpus
from astrodata.corpus.executors import SlurmSettings, slurm_scripts, submit_slurm, write_slurm_scripts
from tests.conftest import FIXTURES, ROOT


def copies(src: Path, dest: Path, n: int) -> Path:
    """`n` copies of every e-print in `src` under new ids (symlinks): copy 0 keeps the names."""
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        for f in sorted(src.iterdir()):
            if f.is_file() and not f.name.endswith(".json"):
                (dest / (f.name if i == 0 else f"copy{i}-{f.name}")).symlink_to(f.resolve())
    return dest


def loopback_netns(cmd: list[str]) -> list[str]:
    """`cmd` inside a new network namespace with only loopback up (Ray otherwise binds the machine's
    own address even when told 127.0.0.1)."""
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]


def netns_available() -> str | None:
    if importlib.util.find_spec("ray") is None:
        return "needs Ray: pip install 'astrodata[ray]'"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2) for a loopback-only network namespace"
    probe = subprocess.run(loopback_netns(["true"]), capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace here (needs root): {probe.stderr.strip()[:200]}"
    return None


def rows(out: Path) -> list[dict]:
    table = pq.ParquetDataset(str(out / "data")).read()
    return sorted(table.to_pylist(), key=lambda r: r["id"])


@pytest.mark.slow
def test_ray_build_equals_local_build_row_for_row_with_a_worker_killed(tmp_path):
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    eprints = copies(FIXTURES / "eprints", tmp_path / "eprints", 2)  # duplicates across shards
    local = build_corpus(tmp_path / "local", CorpusOptions(out=tmp_path / "local" / "corpus", eprints=[eprints],
                                                           workers=2, progress=False))
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must stay < 108 bytes
    # A fresh Ray temp folder (no stale cluster to attach to); no auth token written to ~/.ray: the
    # cluster is reachable only from inside its loopback-only namespace.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "RAY_TMPDIR": str(ray_tmp), "RAY_AUTH_MODE": "disabled"}
    cmd = [sys.executable, "-m", "astrodata.cli", "build-corpus", "--eprints", str(eprints), "--out",
           str(tmp_path / "ray" / "corpus"), "--workdir", str(tmp_path / "ray"), "--executor", "ray", "--shards", "3",
           "--ray-address", "local"]
    killed: list[int] = []

    def kill_one_shard_worker(proc: subprocess.Popen) -> None:
        """SIGKILL the first Ray worker seen running a shard (by PID): Ray must retry that shard."""
        while proc.poll() is None and not killed:
            found = subprocess.run(["pgrep", "-f", "ray::_extract_shard"], capture_output=True, text=True)
            pids = [int(p) for p in found.stdout.split()]
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.2)

    try:
        proc = subprocess.Popen(loopback_netns(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, cwd=ROOT)
        killer = threading.Thread(target=kill_one_shard_worker, args=(proc,), daemon=True)
        killer.start()
        stdout, stderr = proc.communicate(timeout=900)
        killer.join(timeout=5)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        # The Ray cluster it started is gone: no raylet or GCS process left using that temp folder.
        left = subprocess.run(["pgrep", "-f", str(ray_tmp)], capture_output=True, text=True).stdout.split()
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(killed) == 1  # one shard's worker died mid-run; its retry finished the shard
    assert "wrote 3 documents" in done.stderr.replace("\n", " ")
    assert local["output"]["documents"] == 3 and local["output"]["duplicates_removed"] == 3
    assert rows(tmp_path / "ray" / "corpus") == rows(tmp_path / "local" / "corpus")
    shard_dirs = sorted(p.name for p in (tmp_path / "ray" / "shards").iterdir())
    assert shard_dirs == ["1-of-3", "2-of-3", "3-of-3"]
    assert left == []


def test_slurm_scripts_array_then_dependent_merge(tmp_path):
    opts = CorpusOptions(out=Path("corpus"), eprints=[FIXTURES / "eprints"], docs=[FIXTURES / "local_docs"],
                         license="CC-BY-4.0", limit=100)
    slurm = SlurmSettings(partition="cpu", cpus_per_task=4, max_parallel=2, setup=["source .venv/bin/activate"])
    text = slurm_scripts(tmp_path, opts, 5, slurm)
    shards, merge, submit = text["corpus-shards.sbatch"], text["corpus-merge.sbatch"], text["submit.sh"]
    assert shards.startswith("#!/bin/bash\n")
    for line in ("#SBATCH --array=1-5%2", "#SBATCH --cpus-per-task=4", "#SBATCH --partition=cpu",
                 "source .venv/bin/activate"):
        assert line in shards.splitlines()
    command = shards.splitlines()[-1]
    assert command.endswith('--shard "${SLURM_ARRAY_TASK_ID}/5"')
    assert f"--eprints {FIXTURES / 'eprints'}" in command and f"--out {Path('corpus').resolve()}" in command
    assert f"--docs {FIXTURES / 'local_docs'} " in command and "--license CC-BY-4.0" in command
    assert f"--workdir {tmp_path}" in command and "--workers 4" in command and "--limit 100" in command
    assert "--array" not in merge and "--shard" not in merge.splitlines()[-1]
    assert merge.splitlines()[-1] == command.rsplit(" --shard", 1)[0]
    assert "sbatch --parsable corpus-shards.sbatch" in submit
    assert "--dependency=afterok:${jid%%;*} corpus-merge.sbatch" in submit
    bash = subprocess.run(["bash", "-n", "-c", shards + merge + submit], capture_output=True, text=True)
    assert bash.returncode == 0, bash.stderr

    paths = write_slurm_scripts(tmp_path, opts, 5, slurm)
    assert paths["submit.sh"].read_text() == submit and os.access(paths["submit.sh"], os.X_OK)
    if shutil.which("sbatch") is None:
        with pytest.raises(RuntimeError, match="sbatch not found on PATH"):
            submit_slurm(paths)


def test_slurm_dry_run_prints_the_scripts_from_the_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "astrodata.cli", "build-corpus", "--eprints", str(FIXTURES / "eprints"),
                          "--out", str(tmp_path / "corpus"), "--workdir", str(tmp_path / "w"), "--executor", "slurm",
                          "--shards", "3", "--dry-run"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "# --- corpus-shards.sbatch" in out.stdout and "#SBATCH --array=1-3" in out.stdout
    assert not (tmp_path / "w" / "slurm").exists()  # a dry run writes nothing
