"""The stages of `astrodata run`, each a thin call of the stage's existing entry function.

A stage says what it depends on (`after`: upstream stages whose outputs it reads), its resolved
settings (hashed: a change re-runs it), its external inputs (fingerprinted), the outputs it
produces (fingerprinted for the stages downstream), how to start afresh, and how to run.
Folders are wired here, from the run folder: `corpus/`, `qa/`, `cpt/`, `sft/`, `model/` (the
merge), `eval/<model>/`, `eval-report/`.

Settings that change where or how fast work runs but not what it produces (the corpus executor,
shard count, worker count, QA endpoints) are left out of the hash, so moving a build to Ray or to
more servers does not re-run it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astrodata.core.config import deep_merge
from astrodata.core.workspace import Workspace
from astrodata.run.recipe import RunRecipe

MODEL_FILES = ("config.json", "*.safetensors", "model.safetensors.index.json")


@dataclass
class Context:
    """One `astrodata run`: the recipe, the run folder and the switches given on the command line."""

    recipe: RunRecipe
    root: Path
    run_id: str
    submit: bool = False  # executor: slurm: submit the jobs (else only write the scripts)
    progress: bool = True

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)


@dataclass
class Output:
    """A produced path; `include` limits the fingerprint to these top-level file patterns (a model's
    weights and config, not the README the cards stage adds later)."""

    path: Path
    include: tuple[str, ...] | None = None


@dataclass
class Stage:
    name: str
    after: tuple[str, ...]
    enabled: Callable[[RunRecipe], bool]
    settings: Callable[[Context], dict[str, Any]]
    inputs: Callable[[Context], dict[str, Any]]  # name -> Path (fingerprinted) or a plain value
    outputs: Callable[[Context], dict[str, Output]]
    run: Callable[[Context], dict[str, Any]]  # returns the key figures
    reset: Callable[[Context], None] = lambda ctx: None  # remove partial state before a fresh run
    fresh_on_input_change: bool = True  # False: the stage's own resume absorbs new inputs


def _dump(model: Any, exclude: set[str] | None = None) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude=exclude)


# -- harvest ----------------------------------------------------------------------------------
def _harvest_run(ctx: Context) -> dict[str, Any]:
    from astrodata.sources.arxiv_meta import DEFAULT_CATEGORIES, harvest

    h = ctx.recipe.harvest
    with Workspace(ctx.root) as ws:
        s = harvest(ws, h.method, h.categories or list(DEFAULT_CATEGORIES), h.date_from, h.date_until,
                    snapshot=h.snapshot, base_url=h.base_url, metadata_prefix=h.metadata_prefix, ids=h.ids)
    return {"records": s.seen, "new": s.inserted, "updated": s.updated, "errors": s.errors}


# -- corpus -----------------------------------------------------------------------------------
CORPUS_PLACEMENT = {"executor", "shards", "ray_address", "slurm", "workers"}


def corpus_options(ctx: Context) -> Any:
    from astrodata.corpus.build import CorpusOptions

    c = ctx.recipe.corpus
    return CorpusOptions(out=ctx.path("corpus"), eprints=list(c.eprints), wikipedia=list(c.wikipedia),
                         categorylinks=c.categorylinks, docs=list(c.docs), license=c.license, recipe=c.recipe,
                         benchmarks=list(c.benchmarks), workers=c.workers, timeout_s=c.timeout, limit=c.limit,
                         bbl=c.bbl, citations=c.citations, from_catalog=c.from_catalog, eprint_url=c.eprint_url,
                         progress=ctx.progress)


def _corpus_settings(ctx: Context) -> dict[str, Any]:
    from astrodata.corpus.recipe import load_recipe

    c = ctx.recipe.corpus
    return {**_dump(c, CORPUS_PLACEMENT | {"eprints", "docs", "wikipedia", "benchmarks", "categorylinks"}),
            "corpus_recipe": load_recipe(c.recipe).model_dump(mode="json")}


def _corpus_inputs(ctx: Context) -> dict[str, Any]:
    c = ctx.recipe.corpus
    inputs: dict[str, Any] = {f"eprints[{i}]": Path(p) for i, p in enumerate(c.eprints)}
    inputs |= {f"wikipedia[{i}]": Path(w) if Path(w).exists() else w for i, w in enumerate(c.wikipedia)}
    inputs |= {f"docs[{i}]": Path(p) for i, p in enumerate(c.docs)}
    inputs |= {f"benchmarks[{i}]": Path(p) for i, p in enumerate(c.benchmarks)}
    if c.categorylinks:
        inputs["categorylinks"] = Path(c.categorylinks)
    return inputs


def _corpus_reset(ctx: Context) -> None:
    """Forget phase 1's per-document state (extracted shards, signatures, sharded workspaces and the
    documents' catalog rows), so changed filter settings apply to every document."""
    from astrodata.corpus.build import EXTRACT_STAGE

    for name in ("extracted", "signatures", "shards", "corpus"):
        shutil.rmtree(ctx.path(name), ignore_errors=True)
    with Workspace(ctx.root) as ws:
        ws.con.execute("DELETE FROM documents WHERE stage = ?", [EXTRACT_STAGE])


def _corpus_run(ctx: Context) -> dict[str, Any]:
    import json

    from astrodata.corpus.executors import run_corpus

    c = ctx.recipe.corpus
    stats, submitted = ctx.path("corpus", "stats.json"), ctx.path("slurm", "submit.sh")
    if c.executor == "slurm" and submitted.is_file() and stats.is_file() \
            and stats.stat().st_mtime > submitted.stat().st_mtime:
        s = json.loads(stats.read_text())  # the SLURM merge job has finished: adopt its output
        return {"documents": s.get("documents"), "tokens": s.get("tokens"), "executor": "slurm"}
    summary = run_corpus(ctx.root, corpus_options(ctx), executor=c.executor, shards=c.shards,
                         address=c.ray_address, slurm=c.slurm, submit=ctx.submit)
    if "slurm" in summary:
        return summary
    out = summary.get("output", {})
    return {"documents": out.get("documents"), "tokens": out.get("tokens"),
            "duplicates_removed": out.get("duplicates_removed"), "failed": summary.get("failed"),
            "dropped": summary.get("dropped"), "executor": c.executor}


# -- qa ---------------------------------------------------------------------------------------
def _qa_settings(ctx: Context) -> dict[str, Any]:
    from astrodata.qa.recipe import load_qa_recipe

    q = ctx.recipe.qa
    recipe = load_qa_recipe(q.recipe, q.settings)
    given = {k: v for k, v in (("model", q.model), ("dialect", q.dialect)) if v is not None}
    generator = {**_dump(recipe.generator), **given, "endpoint": None}  # endpoints: where, not what
    return {"limit": q.limit, "qa_recipe": {**_dump(recipe), "generator": generator}}


def _qa_run(ctx: Context) -> dict[str, Any]:
    from astrodata.qa.build import build_qa

    q = ctx.recipe.qa
    endpoint: str | list[str] | None = q.endpoint[0] if len(q.endpoint) == 1 else (q.endpoint or None)
    stats = build_qa(ctx.path("corpus"), ctx.path("qa"), ctx.root, limit=q.limit, endpoint=endpoint, model=q.model,
                     recipe=q.recipe, dialect=q.dialect, progress=ctx.progress, overrides=q.settings or None)
    e = stats["engine"]
    return {"documents": stats["documents"], **{f"items_{k}": n for k, n in sorted(stats["output"].items())},
            "requests_sent": e["requests_sent"], "cache_hits": e["cache_hits"], "cost_usd": round(e["cost_usd"], 4)}


# -- training ---------------------------------------------------------------------------------
def train_config(ctx: Context, stage: str) -> Any:
    """The resolved CPT/SFT config: the section's file and settings, with the run's folders wired in."""
    from training.config import CPTConfig, SFTConfig, load_config

    section = getattr(ctx.recipe, stage)
    wired: dict[str, Any] = {"output_dir": str(ctx.path(stage))}
    if stage == "cpt":
        wired["dataset"] = str(ctx.path("corpus"))
    else:
        wired["dataset"] = str(ctx.path("qa"))
        if ctx.recipe.cpt is not None:
            wired["model"] = str(ctx.path("cpt"))
    cls = CPTConfig if stage == "cpt" else SFTConfig
    return load_config(cls, section.config, deep_merge(section.settings, wired))


def _train_run(stage: str) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        import importlib

        result = importlib.import_module(f"training.{stage}").run(train_config(ctx, stage))
        return {"steps": result.global_step, "final_loss": round(result.losses[-1][1], 4) if result.losses else None,
                "tokens_per_s": round(result.tokens_per_second)}
    return run


def _train_settings(stage: str) -> Callable[[Context], dict[str, Any]]:
    return lambda ctx: train_config(ctx, stage).model_dump(mode="json")


def _train_inputs(stage: str) -> Callable[[Context], dict[str, Any]]:
    def inputs(ctx: Context) -> dict[str, Any]:
        model = train_config(ctx, stage).model
        if stage == "sft" and ctx.recipe.cpt is not None:
            return {}  # the CPT output, an upstream stage
        return {"model": _model_path(model)}
    return inputs


def _model_path(name: str) -> Path | str:
    """A local model folder to fingerprint (`embedded` resolved), or the Hub id as it is."""
    from astrodata.core.models import resolve_model

    path = Path(resolve_model(name))
    return path if path.exists() else name


def _wipe(stage_dir: str) -> Callable[[Context], None]:
    return lambda ctx: shutil.rmtree(ctx.path(stage_dir), ignore_errors=True)


# -- merge ------------------------------------------------------------------------------------
def merge_config(ctx: Context) -> Any:
    from astrodata.core.models import resolve_model
    from training.config import MergeConfig

    m = ctx.recipe.merge
    instruct = resolve_model(m.instruct)
    return MergeConfig(models=[{"path": ctx.path("sft"), "weight": m.weight},
                               {"path": instruct, "weight": round(1 - m.weight, 10)}],
                       out=ctx.path("model"), dtype=m.dtype, base_from=instruct, max_shard_size=m.max_shard_size)


def _merge_run(ctx: Context) -> dict[str, Any]:
    from training.merge import merge

    s = merge(merge_config(ctx))
    return {"tensors": s["tensors"], "shards": s["shards"], "gb": round(s["bytes"] / 1e9, 3)}


# -- eval -------------------------------------------------------------------------------------
def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def eval_targets(ctx: Context) -> dict[str, tuple[str, str | None]]:
    """Eval folder name -> (model, endpoint): the merged model, then each baseline."""
    e = ctx.recipe.eval
    targets: dict[str, tuple[str, str | None]] = {}
    if ctx.recipe.merge is not None:
        targets["model"] = (str(ctx.path("model")), None)
    for name in e.baselines:
        targets[f"baseline-{_slug(name)}"] = (name, e.endpoint)
    return targets


def _eval_run(ctx: Context) -> dict[str, Any]:
    from benchmarks.astromlab1 import evaluate

    e = ctx.recipe.eval
    figures: dict[str, Any] = {}
    for folder, (model, endpoint) in eval_targets(ctx).items():
        r = evaluate(e.data, model, e.method, ctx.path("eval", folder), dtype=e.dtype, batch_size=e.batch_size,
                     endpoint=endpoint, answer_key=e.answer_key, few_shot=e.few_shot, limit=e.limit,
                     max_new_tokens=e.max_new_tokens)
        figures[f"{folder}_accuracy"] = None if r["accuracy"] is None else round(r["accuracy"], 4)
        figures["questions"] = r["n_questions"]
    return figures


def _eval_inputs(ctx: Context) -> dict[str, Any]:
    e = ctx.recipe.eval
    inputs: dict[str, Any] = {"data": Path(e.data) if Path(e.data).exists() else e.data}
    if e.answer_key:
        inputs["answer_key"] = Path(e.answer_key)
    for name in e.baselines:
        inputs[f"baseline:{name}"] = name if e.endpoint else _model_path(name)
    return inputs


# -- report -----------------------------------------------------------------------------------
def _report_run(ctx: Context) -> dict[str, Any]:
    from benchmarks.report import build_report

    results = [ctx.path("eval", folder, "results.json") for folder in eval_targets(ctx)]
    paths = build_report(results, ctx.path("eval-report"), costs=dict(ctx.recipe.report.costs))
    return {"files": len(paths)}


# -- cards ------------------------------------------------------------------------------------
def _cards_run(ctx: Context) -> dict[str, Any]:
    from cards.render import write_corpus_card, write_model_card, write_qa_card

    c = ctx.recipe.cards
    written = [write_corpus_card(ctx.path("corpus"), c.corpus_title)]
    if ctx.recipe.qa is not None:
        written.append(write_qa_card(ctx.path("qa"), c.qa_title))
    if ctx.recipe.merge is not None:
        # the merged model's AstroMLab-1 results (run folder eval/model/), when the eval stage ran
        results = [r for r in [ctx.path("eval", "model", "results.json")] if r.is_file()] or None
        written.append(write_model_card(ctx.path("model"), results, costs=dict(ctx.recipe.report.costs)))
    return {"cards": len(written)}


def _cards_outputs(ctx: Context) -> dict[str, Output]:
    outs = {"corpus_card": Output(ctx.path("corpus", "README.md"))}
    if ctx.recipe.qa is not None:
        outs["qa_card"] = Output(ctx.path("qa", "README.md"))
    if ctx.recipe.merge is not None:
        outs["model_card"] = Output(ctx.path("model", "README.md"))
    return outs


# -- publish ----------------------------------------------------------------------------------
def publish_folder(path: Path, repo_id: str, *, repo_type: str, private: bool, revision: str | None,
                   commit_message: str | None, dry_run: bool, workdir: Path) -> Any:
    """Adapter to the Hub publisher (`cards.publish.publish`); the one place that knows its signature."""
    from cards.publish import publish

    return publish(path, repo_id, repo_type=repo_type, private=private, revision=revision,
                   commit_message=commit_message, dry_run=dry_run, workdir=workdir)


def _publish_targets(ctx: Context) -> list[tuple[Path, str, str]]:
    p = ctx.recipe.publish
    targets = [(ctx.path("corpus"), p.corpus_repo, "dataset"), (ctx.path("qa"), p.qa_repo, "dataset"),
               (ctx.path("model"), p.model_repo, "model")]
    return [(path, repo, kind) for path, repo, kind in targets if repo]


def _publish_run(ctx: Context) -> dict[str, Any]:
    p = ctx.recipe.publish
    for path, repo, kind in _publish_targets(ctx):
        publish_folder(path, repo, repo_type=kind, private=p.private, revision=p.revision,
                       commit_message=p.commit_message, dry_run=p.dry_run, workdir=ctx.root)
    return {"repos": len(_publish_targets(ctx)), "dry_run": p.dry_run}


def _none(ctx: Context) -> dict[str, Any]:
    return {}


STAGES: list[Stage] = [
    Stage("harvest", (), lambda r: r.harvest is not None, lambda ctx: _dump(ctx.recipe.harvest),
          lambda ctx: {"snapshot": ctx.recipe.harvest.snapshot} if ctx.recipe.harvest.snapshot else {},
          lambda ctx: {"papers": Output(Path("catalog:papers"))}, _harvest_run),
    Stage("corpus", ("harvest",), lambda r: True, _corpus_settings, _corpus_inputs,
          lambda ctx: {"corpus": Output(ctx.path("corpus", "data"))}, _corpus_run, _corpus_reset,
          fresh_on_input_change=False),
    Stage("qa", ("corpus",), lambda r: r.qa is not None, _qa_settings, _none,
          lambda ctx: {"qa": Output(ctx.path("qa", "data"))}, _qa_run, fresh_on_input_change=False),
    Stage("cpt", ("corpus",), lambda r: r.cpt is not None, _train_settings("cpt"), _train_inputs("cpt"),
          lambda ctx: {"model": Output(ctx.path("cpt"), MODEL_FILES)}, _train_run("cpt"), _wipe("cpt")),
    Stage("sft", ("cpt", "qa"), lambda r: r.sft is not None and r.qa is not None, _train_settings("sft"),
          _train_inputs("sft"), lambda ctx: {"model": Output(ctx.path("sft"), MODEL_FILES)}, _train_run("sft"),
          _wipe("sft")),
    Stage("merge", ("sft",), lambda r: r.merge is not None and r.sft is not None,
          lambda ctx: _dump(ctx.recipe.merge),
          lambda ctx: {"instruct": _model_path(ctx.recipe.merge.instruct)},
          lambda ctx: {"model": Output(ctx.path("model"), MODEL_FILES)}, _merge_run, _wipe("model")),
    Stage("eval", ("merge",), lambda r: r.eval is not None, lambda ctx: _dump(ctx.recipe.eval), _eval_inputs,
          lambda ctx: {f: Output(ctx.path("eval", f, "results.json")) for f in eval_targets(ctx)}, _eval_run,
          _wipe("eval")),
    Stage("report", ("eval",), lambda r: r.report is not None and r.eval is not None,
          lambda ctx: _dump(ctx.recipe.report), _none,
          lambda ctx: {"report": Output(ctx.path("eval-report", "report.md"))}, _report_run),
    Stage("cards", ("corpus", "qa", "merge", "eval", "report"), lambda r: r.cards is not None,
          lambda ctx: _dump(ctx.recipe.cards), _none, _cards_outputs, _cards_run),
    Stage("publish", ("cards", "corpus", "qa", "merge"), lambda r: r.publish is not None,
          lambda ctx: _dump(ctx.recipe.publish), _none, lambda ctx: {}, _publish_run),
]
STAGE_NAMES = [s.name for s in STAGES]
