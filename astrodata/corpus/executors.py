"""Where phase 1 of the corpus build runs: here (`local`), as Ray tasks, or as a SLURM array job.

Every executor reuses the build's own sharding (`build_corpus` with `shard=(K, N)`: the documents
whose stable hash falls in shard K, extracted into their own workspace `WORKDIR/shards/K-of-N/`,
resumable document by document) and the build's own single merge (`build_corpus` unsharded: folds
the shard catalogs in, finds every document already extracted, deduplicates over all shards'
signatures in DuckDB and writes the dataset). So the output is the local build's, row for row.

- `ray`: one Ray task per shard on the cluster `ray.init(address=...)` reaches (`local` starts one
  on this machine and stops it after). A task whose worker process dies (OOM, a lost node) is
  retried by Ray (`max_retries`); the retry resumes the shard's own per-document state. Needs the
  optional extra `astrodata[ray]`. Ray rather than a hand-written process pool because it is what
  the field's curation tools (NeMo Curator, datatrove) and vLLM's batch jobs run on, and it spans
  machines.
- `slurm`: writes `WORKDIR/slurm/corpus-shards.sbatch` (an array job, one task per shard),
  `corpus-merge.sbatch` (the merge) and `submit.sh` (submits the array, then the merge with
  `--dependency=afterok`); `submit=True` runs it. SLURM has no Python API to reuse, so the scripts
  are text written here.

The harvested `papers` rows are copied into each shard's workspace first, so sharded builds use the
same arXiv metadata (titles, licences) as the local one and `--from-catalog` downloads per shard.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from astrodata.core.config import Strict
from astrodata.core.workspace import Workspace
from astrodata.corpus.build import CorpusOptions, build_corpus, shard_workspace

EXECUTORS = ("local", "ray", "slurm")


class SlurmSettings(Strict):
    """`executor: slurm`: resources of each array task (written as `#SBATCH` lines)."""

    partition: str | None = None
    account: str | None = None
    time: str = "04:00:00"  # per shard (our choice: ~10k e-prints at ~0.17 core-s each, bench_corpus.py, with room)
    cpus_per_task: int = 8  # also the shard's worker processes
    mem: str = "32G"
    max_parallel: int | None = None  # `--array=1-N%M`: at most M shards at once
    setup: list[str] = Field(default_factory=list)  # shell lines run first (module load, source .venv/bin/activate)


def run_corpus(workdir: str | Path, opts: CorpusOptions, *, executor: str = "local", shards: int = 8,
               address: str = "local", slurm: SlurmSettings | None = None, submit: bool = False) -> dict[str, Any]:
    """Build the corpus with phase 1 on `executor`; returns build_corpus's summary (for `slurm`:
    `{"slurm": {"scripts": [...], "submitted": [job ids]}}`, the build finishes on the cluster).

    Raises ValueError for an unknown executor, RuntimeError when a Ray shard fails for good."""
    workdir = Path(workdir).resolve()
    opts = _absolute(opts)
    if executor == "local":
        return build_corpus(workdir, opts)
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if opts.shard is not None:
        raise ValueError(f"executor {executor} makes the shards itself; do not also give --shard")
    if shards < 1:
        raise ValueError("shards must be >= 1")
    seed_shard_workspaces(workdir, shards)
    if executor == "slurm":
        paths = write_slurm_scripts(workdir, opts, shards, slurm)
        return {"slurm": {"scripts": [str(p) for p in paths.values()],
                          "submitted": submit_slurm(paths) if submit else []}}
    run_ray_shards(workdir, opts, shards, address)
    return build_corpus(workdir, opts)


def _absolute(opts: CorpusOptions) -> CorpusOptions:
    """Paths made absolute, so workers on other machines or in other folders read the same files."""
    def fix(p: Path | None) -> Path | None:
        return None if p is None else Path(p).resolve()
    return opts.model_copy(update={
        "out": fix(opts.out), "eprints": [fix(p) for p in opts.eprints], "docs": [fix(p) for p in opts.docs],
        "recipe": fix(opts.recipe), "benchmarks": [fix(p) for p in opts.benchmarks],
        "categorylinks": fix(opts.categorylinks),
        "wikipedia": [str(Path(w).resolve()) if Path(w).exists() else w for w in opts.wikipedia]})


def seed_shard_workspaces(workdir: Path, shards: int) -> None:
    """Copy the harvested papers into every shard's workspace (idempotent)."""
    with Workspace(workdir) as ws:
        has_papers = ws.con.execute("SELECT count(*) FROM papers").fetchall()[0][0] > 0
    if not has_papers:
        return
    main = workdir / "catalog.duckdb"
    for k in range(1, shards + 1):
        with Workspace(shard_workspace(workdir, (k, shards))) as ws:
            ws.con.execute("ATTACH ? AS main_catalog (READ_ONLY)", [str(main)])
            try:
                ws.con.execute("INSERT OR REPLACE INTO papers SELECT * FROM main_catalog.papers")
            finally:
                ws.con.execute("DETACH main_catalog")


# -- Ray ---------------------------------------------------------------------------------------
def _extract_shard(workdir: str, opts: CorpusOptions, shard: tuple[int, int]) -> dict[str, Any]:
    """One Ray task: phase 1 of one shard, one worker process (the task holds one CPU)."""
    return build_corpus(Path(workdir), opts.model_copy(update={"shard": shard, "workers": 1, "progress": False}))


def run_ray_shards(workdir: Path, opts: CorpusOptions, shards: int, address: str = "local",
                   max_retries: int = 3) -> list[dict[str, Any]]:
    """Phase 1 of every shard as Ray tasks; returns their summaries in shard order.

    Starts (and afterwards shuts down) a local cluster for `address="local"`; joins an existing
    cluster for `auto` or `ray://host:port` and leaves it running. Raises RuntimeError naming the
    shards that failed after their retries (the others are kept: re-running resumes)."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("executor ray needs Ray: pip install 'astrodata[ray]'") from None
    owned = not ray.is_initialized()
    if owned:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=max_retries)(_extract_shard)
        refs = {task.remote(str(workdir), opts, (k, shards)): k for k in range(1, shards + 1)}
        results: dict[int, dict[str, Any]] = {}
        failed: dict[int, str] = {}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            k = refs[done[0]]
            try:
                results[k] = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - reported together below
                failed[k] = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if failed:
            raise RuntimeError("corpus shard(s) failed on Ray: " + "; ".join(
                f"{k}/{shards}: {why}" for k, why in sorted(failed.items())) + " (re-run to resume them)")
        return [results[k] for k in sorted(results)]
    finally:
        if owned:
            ray.shutdown()


# -- SLURM -------------------------------------------------------------------------------------
def corpus_cli_args(opts: CorpusOptions) -> list[str]:
    """The `astrodata build-corpus` arguments that reproduce `opts` (without --shard/--workdir)."""
    args = ["--out", str(opts.out)]
    args += [a for p in opts.eprints for a in ("--eprints", str(p))]
    args += [a for w in opts.wikipedia for a in ("--wikipedia", str(w))]
    args += [a for p in opts.docs for a in ("--docs", str(p))]
    args += [a for p in opts.benchmarks for a in ("--benchmark", str(p))]
    for flag, value in (("--categorylinks", opts.categorylinks), ("--license", opts.license),
                        ("--recipe", opts.recipe), ("--limit", opts.limit)):
        if value is not None:
            args += [flag, str(value)]
    args += ["--timeout", f"{opts.timeout_s:g}", "--bbl", opts.bbl, "--citations", opts.citations]
    if opts.from_catalog:
        args += ["--from-catalog", "--eprint-url", opts.eprint_url]
    return args


def _sbatch_header(name: str, log: Path, slurm: SlurmSettings, array: str | None = None) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={log}",
             f"#SBATCH --time={slurm.time}", f"#SBATCH --cpus-per-task={slurm.cpus_per_task}",
             f"#SBATCH --mem={slurm.mem}"]
    if array:
        lines.append(f"#SBATCH --array={array}")
    lines += [f"#SBATCH --{key}={value}" for key, value in (("partition", slurm.partition),
                                                              ("account", slurm.account)) if value]
    return [*lines, "set -euo pipefail", *slurm.setup]


def slurm_scripts(workdir: Path, opts: CorpusOptions, shards: int,
                  slurm: SlurmSettings | None = None) -> dict[str, str]:
    """The text of `corpus-shards.sbatch`, `corpus-merge.sbatch` and `submit.sh`."""
    slurm, opts, workdir = slurm or SlurmSettings(), _absolute(opts), Path(workdir).resolve()
    folder = workdir / "slurm"
    # `astrodata` from the PATH the setup lines prepare (e.g. `source .venv/bin/activate`) on the nodes.
    exe = shlex.join(["astrodata", "build-corpus", *corpus_cli_args(opts),
                      "--workdir", str(workdir), "--workers", str(slurm.cpus_per_task)])
    array = f"1-{shards}" + (f"%{slurm.max_parallel}" if slurm.max_parallel else "")
    shard_script = _sbatch_header("astrodata-corpus-shards", folder / "logs" / "shard-%A_%a.out", slurm, array)
    shard_script.append(f'{exe} --shard "${{SLURM_ARRAY_TASK_ID}}/{shards}"')
    merge_script = _sbatch_header("astrodata-corpus-merge", folder / "logs" / "merge-%j.out", slurm)
    merge_script.append(exe)
    submit = ["#!/bin/bash", "# Submit the shard array, then the merge once every shard succeeded.", "set -euo pipefail",
              f'cd {shlex.quote(str(folder))}', "jid=$(sbatch --parsable corpus-shards.sbatch)",
              "mid=$(sbatch --parsable --dependency=afterok:${jid%%;*} corpus-merge.sbatch)",
              'echo "shards ${jid%%;*} merge ${mid%%;*}"']
    return {name: "\n".join(lines) + "\n" for name, lines in (
        ("corpus-shards.sbatch", shard_script), ("corpus-merge.sbatch", merge_script), ("submit.sh", submit))}


def write_slurm_scripts(workdir: Path, opts: CorpusOptions, shards: int,
                        slurm: SlurmSettings | None = None) -> dict[str, Path]:
    """Write the SLURM scripts into `WORKDIR/slurm/`; returns name -> path."""
    folder = workdir / "slurm"
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, text in slurm_scripts(workdir, opts, shards, slurm).items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)
        paths[name] = path
    return paths


def submit_slurm(paths: dict[str, Path]) -> list[str]:
    """Run `submit.sh`; returns the job ids [array, merge]. Raises RuntimeError without sbatch."""
    if shutil.which("sbatch") is None:
        raise RuntimeError("sbatch not found on PATH: run this on a SLURM login node, or submit "
                           f"{paths['submit.sh']} there")
    started = time.time()
    out = subprocess.run(["bash", str(paths["submit.sh"])], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"sbatch failed after {time.time() - started:.0f} s: {out.stderr.strip()[:300]}")
    return out.stdout.split()[1::2]
