"""`astrodata run RECIPE.yaml`: plan the stages, run those out of date, record each in the catalog.

Up-to-date rule (like make, but on content descriptions rather than timestamps alone): a stage is
up to date when its last recorded run in `stage_runs` finished, with the same settings hash and the
same inputs hash, and its outputs are still on disk unchanged. The inputs hash covers the settings
hash, the fingerprint of every external input (files: relative path, size and modification time
of every file under it) and the fingerprint of every upstream stage's outputs. So a changed SFT
setting re-runs SFT, which rewrites the SFT model, whose new fingerprint re-runs merge, eval,
report and cards; nothing upstream moves.

A stage that re-runs because its settings or inputs changed starts afresh (its partial state is
removed first; the corpus keeps its per-document state when only its inputs changed, and the QA
stage always keeps the request cache, so no reply is paid twice). A stage whose last run with the
same fingerprint was interrupted resumes inside itself (the stages already resume).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrodata.core.workspace import Workspace, utc_now
from astrodata.run.recipe import RunRecipe
from astrodata.run.stages import STAGE_NAMES, STAGES, Context, Stage


def sha256(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _files(path: Path, include: tuple[str, ...] | None) -> Iterator[Path]:
    if path.is_file():
        yield path
    elif include is not None:
        yield from sorted({f for pattern in include for f in path.glob(pattern) if f.is_file()})
    else:
        yield from sorted(f for f in path.rglob("*") if f.is_file())


def fingerprint(target: Path | str, include: tuple[str, ...] | None = None, root: Path | None = None) -> str | None:
    """A short hash describing a file or folder (relative path, size, mtime of each file), the
    harvested papers (`catalog:papers`), or a plain value (a Hub id); None when a path is missing."""
    if isinstance(target, Path) and str(target) == "catalog:papers":
        with Workspace(root) as ws:
            rows = ws.con.execute("SELECT arxiv_id, latest_version, updated FROM papers ORDER BY arxiv_id").fetchall()
        return sha256(rows)[:16]
    if not isinstance(target, Path):
        return sha256(str(target))[:16]
    if not target.exists():
        return None
    entries = []
    for f in _files(target, include):
        st = f.stat()
        entries.append((str(f.relative_to(target)) if f != target else f.name, st.st_size, st.st_mtime_ns))
    if not entries:
        return None
    return sha256(entries)[:16]


def outputs_fingerprint(stage: Stage, ctx: Context) -> dict[str, dict[str, Any]]:
    return {name: {"path": str(o.path), "fingerprint": fingerprint(o.path, o.include, ctx.root)}
            for name, o in stage.outputs(ctx).items()}


@dataclass
class Step:
    """One stage in the plan: what will happen and why."""

    stage: Stage
    action: str  # run | resume | up to date | off
    reason: str
    settings: dict[str, Any] = field(default_factory=dict)
    settings_hash: str = ""
    outcome: str = ""  # after running: ran | resumed | up to date | off | failed | submitted
    seconds: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, with old -> new for scalars."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new)) for d in _diff(old.get(k), new.get(k), f"{prefix}{k}.")]
    if old == new:
        return []
    key = prefix.rstrip(".")
    if isinstance(old, dict | list) or isinstance(new, dict | list):
        return [key]
    return [f"{key} {old!r} -> {new!r}"]


def _inputs(stage: Stage, ctx: Context, enabled: set[str]) -> dict[str, str | None]:
    """Fingerprints of the external inputs and of every enabled upstream stage's outputs."""
    found = {name: fingerprint(value, root=ctx.root) for name, value in stage.inputs(ctx).items()}
    by_name = {s.name: s for s in STAGES}
    for up in stage.after:
        if up in enabled:
            for name, out in outputs_fingerprint(by_name[up], ctx).items():
                found[f"{up}:{name}"] = out["fingerprint"]
    return found


def inputs_hash(settings_hash: str, inputs: dict[str, str | None]) -> str:
    return sha256([settings_hash, inputs])


def plan(ctx: Context, *, until: str | None = None, only: str | None = None, publish: bool = False) -> list[Step]:
    """What each stage would do now, and why (nothing runs)."""
    for name in (until, only):
        if name is not None and name not in STAGE_NAMES:
            raise ValueError(f"unknown stage {name!r} (stages: {', '.join(STAGE_NAMES)})")
    recipe = ctx.recipe
    enabled = {s.name for s in STAGES if s.enabled(recipe)}
    last_index = STAGE_NAMES.index(until) if until else len(STAGES) - 1
    steps: list[Step] = []
    rerun: set[str] = set()
    previous: dict[str, dict[str, Any] | None] = dict.fromkeys(STAGE_NAMES)
    if (ctx.root / "catalog.duckdb").exists():
        with Workspace(ctx.root) as ws:
            previous = {name: ws.last_stage_run(name) for name in STAGE_NAMES}
    for i, stage in enumerate(STAGES):
        if stage.name not in enabled:
            steps.append(Step(stage, "off", "not in the recipe"))
            continue
        if stage.name == "publish" and not (publish or only == "publish"):
            steps.append(Step(stage, "off", "publishing runs only when asked (--publish)"))
            continue
        settings = stage.settings(ctx)
        s_hash = sha256(settings)
        step = Step(stage, "", "", settings, s_hash)
        steps.append(step)
        if only is not None and stage.name != only:
            step.action, step.reason = "off", f"--only {only}"
            continue
        if i > last_index:
            step.action, step.reason = "off", f"after --until {until}"
            continue
        prev = previous[stage.name]
        upstream = [u for u in stage.after if u in rerun]
        if prev is None:
            step.action, step.reason = "run", "never run in this run folder"
        elif upstream and only is None:
            step.action, step.reason = "run", f"upstream {', '.join(upstream)} re-runs"
        elif prev["settings_hash"] != s_hash:
            changes = _diff(prev["settings"], settings)
            step.action = "run"
            step.reason = "settings changed: " + ("; ".join(changes[:4]) + (" ..." if len(changes) > 4 else ""))
        else:
            inputs = _inputs(stage, ctx, enabled)
            changed = sorted(k for k in set(inputs) | set(prev["inputs"] or {})
                             if inputs.get(k) != (prev["inputs"] or {}).get(k))
            missing = [k for k, v in inputs.items() if v is None]
            outs = outputs_fingerprint(stage, ctx)
            gone = [k for k, v in outs.items() if v["fingerprint"] != (prev["outputs"] or {}).get(k, {}).get("fingerprint")]
            if missing:
                step.action, step.reason = "run", f"input(s) missing: {', '.join(missing)}"
            elif changed:
                step.action, step.reason = "run", f"input(s) changed: {', '.join(changed)}"
            elif prev["status"] in ("running", "failed", "submitted"):
                step.action = "resume"
                step.reason = f"last run ({prev['run_id']}) ended {prev['status']}: continues where it stopped"
            elif gone:
                step.action, step.reason = "run", f"output(s) changed or missing: {', '.join(gone)}"
            else:
                step.action = "up to date"
                step.reason = f"settings and inputs unchanged since run {prev['run_id']}"
                step.figures, step.outputs = prev["figures"] or {}, prev["outputs"] or {}  # what is on disk
        if step.action in ("run", "resume"):
            rerun.add(stage.name)
    return steps


def _fresh(step: Step) -> bool:
    """Whether a stage about to run drops its partial state first: always for new settings (and a
    first run), for changed inputs or outputs only where the stage's own resume cannot absorb them."""
    if step.action != "run":
        return False
    if step.reason.startswith(("settings changed", "never run")):
        return True
    return step.stage.fresh_on_input_change


def execute(ctx: Context, steps: list[Step], log: Any = print) -> list[Step]:
    """Run the planned steps in order, recording each in `stage_runs`; stops at the first failure
    (raised after the failure is recorded). Returns the steps with their outcomes."""
    enabled = {s.name for s in STAGES if s.enabled(ctx.recipe)}
    for step in steps:
        stage = step.stage
        if step.action not in ("run", "resume"):
            step.outcome = step.action
            continue
        if _fresh(step):
            stage.reset(ctx)
        inputs = _inputs(stage, ctx, enabled)
        i_hash = inputs_hash(step.settings_hash, inputs)
        started = utc_now()
        with Workspace(ctx.root) as ws:
            ws.record_stage_run(ctx.run_id, stage.name, status="running", settings_hash=step.settings_hash,
                                inputs_hash=i_hash, settings=step.settings, inputs=inputs, started_at=started)
        log(f"[{stage.name}] {step.action}: {step.reason}")
        t0 = time.perf_counter()
        try:
            step.figures = stage.run(ctx) or {}
        except BaseException as exc:
            step.seconds = round(time.perf_counter() - t0, 1)
            step.outcome = "failed"
            with Workspace(ctx.root) as ws:
                ws.record_stage_run(ctx.run_id, stage.name, status="failed", ended_at=utc_now(),
                                    seconds=step.seconds, error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        step.seconds = round(time.perf_counter() - t0, 1)
        status = "submitted" if "slurm" in step.figures else "done"
        step.outcome = "submitted" if status == "submitted" else ("resumed" if step.action == "resume" else "ran")
        step.outputs = outputs_fingerprint(stage, ctx)
        with Workspace(ctx.root) as ws:
            ws.record_stage_run(ctx.run_id, stage.name, status=status, outputs=step.outputs, figures=step.figures,
                                ended_at=utc_now(), seconds=step.seconds)
        if status == "submitted":
            for later in steps[steps.index(step) + 1:]:
                if later.action in ("run", "resume"):
                    later.action = later.outcome = "waiting"
                    later.reason = f"{stage.name} runs on SLURM: run again when its jobs have finished"
            break
    return steps


def new_context(recipe: RunRecipe, *, submit: bool = False, progress: bool = True, create: bool = True) -> Context:
    root = Path(recipe.workdir).resolve()
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return Context(recipe, root, f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}", submit, progress)


def run_pipeline(recipe: RunRecipe, *, until: str | None = None, only: str | None = None, dry_run: bool = False,
                 publish: bool = False, submit: bool = False, progress: bool = True,
                 log: Any = print, show: Any = None) -> tuple[Context, list[Step]]:
    """Plan, then (unless `dry_run`) run the out-of-date stages and write the run report.

    Returns the context and the steps with their actions, reasons and outcomes; `show(ctx, steps)`
    is called with them at the end, also when a stage fails. Raises the first stage's exception
    after recording it (the report is still written)."""
    from astrodata.run.report import write_report

    ctx = new_context(recipe, submit=submit, progress=progress, create=not dry_run)
    steps = plan(ctx, until=until, only=only, publish=publish)
    try:
        if not dry_run:
            execute(ctx, steps, log)
    finally:
        if not dry_run:
            write_report(ctx, steps)
        if show is not None:
            show(ctx, steps)
    return ctx, steps
