"""The `astrodata` command: a thin Typer shell over the stage entry functions.

Each command imports its stage lazily, so `astrodata --help` is instant and `astrodata` itself
never imports `benchmarks`, `training` or `cards` at module level (data flows forward).
Any exception becomes a non-zero exit with a one-line reason.
"""

from __future__ import annotations

import functools
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

# `--help` lists the commands in pipeline order; a command not named here follows, as registered.
PIPELINE = ("run", "harvest", "build-corpus", "build-qa", "train", "merge", "eval", "eval-general", "export-lm-eval",
            "report", "publish", "status", "sql")


class _PipelineOrder(TyperGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: PIPELINE.index(n) if n in PIPELINE else len(PIPELINE))


app = typer.Typer(cls=_PipelineOrder, no_args_is_help=True, add_completion=False, help=__doc__.splitlines()[0])
console = Console(stderr=True, soft_wrap=True)  # closing lines stay one line in logs (grep finds them)

# Choices are checked by the parser, before any model or data loads (e.g. a mistyped --method).
Method = Literal["base-token", "instruct-token", "generate"]
Dtype = Literal["float32", "bfloat16"]
WorkdirOpt = Annotated[Path, typer.Option("--workdir", help="Workspace folder (catalog.duckdb + outputs).")]


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"astrodata {version('astrodata')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Build astronomy LLM data sets, train and evaluate (astrodata COMMAND --help for each)."""
    # One progress style: our rich bars (or plain lines off a terminal). The libraries' own tqdm
    # bars ("Loading weights", downloads) are switched off unless the user asks for them.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")


class UserError(Exception):
    """A failure the user can fix; printed as one line without a traceback."""


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn any exception into `error: <reason>` on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI boundary reports every failure
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            from pydantic import ValidationError

            if isinstance(exc, ValidationError):  # its first line names only the model
                from astrodata.core.config import describe_errors

                reason = f"{exc.title}: {describe_errors(exc)}"
            console.print(f"[red]error:[/red] {type(exc).__name__}: {reason}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def options(model: Any, names: dict[str, str], **values: Any) -> Any:
    """`model(**values)` from command-line values; a bad one is a UserError naming its option
    (`--field-name`, or `names[field]` where the flag is spelt otherwise)."""
    from pydantic import ValidationError

    from astrodata.core.config import describe_errors

    try:
        return model(**values)
    except ValidationError as exc:
        flags = {f: names.get(f, "--" + f.replace("_", "-")) for f in model.model_fields}
        raise UserError(describe_errors(exc, flags)) from None


def command(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a CLI command with one-line error reporting."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        return app.command(name, **kwargs)(one_line_errors(fn))

    return decorate


@command("eval")
def eval_cmd(
    data: Annotated[str, typer.Option("--data", help="MCQ file (.parquet/.jsonl/.csv), folder, or Hub dataset id.")],
    model: Annotated[str, typer.Option("--model", help="Model folder, Hub id, `embedded`, or the endpoint's model name.")],
    method: Annotated[Method, typer.Option("--method", help="Scoring method.")],
    out: Annotated[Path, typer.Option("--out", file_okay=False, help="Output folder (predictions.jsonl, results.json).")],
    dtype: Annotated[Dtype, typer.Option(help="Weights precision (local models).")] = "float32",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1,
                                            help="Questions per forward pass (or concurrent requests).")] = 8,
    endpoint: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL; key from OPENAI_API_KEY.")] = None,
    answer_key: Annotated[Path | None, typer.Option("--answer-key", help="Separate answer-key file.")] = None,
    few_shot: Annotated[int, typer.Option("--few-shot", min=0, help="Examples taken from the start of the file.")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions.")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="generate: reply length.")] = 256,
    prompts: Annotated[Path | None, typer.Option(
        "--prompts", exists=True, dir_okay=False,
        help="Prompt YAML replacing benchmarks/prompts (e.g. lm-eval's MMLU wording), same keys.")] = None,
) -> None:
    """Evaluate a model on AstroMLab-1-style MCQs (base-token, instruct-token or generate scoring)."""
    from benchmarks.astromlab1 import evaluate

    r = evaluate(data, model, method, out, dtype=dtype, batch_size=batch_size, endpoint=endpoint,
                 answer_key=answer_key, few_shot=few_shot, limit=limit, max_new_tokens=max_new_tokens,
                 prompts_path=prompts)
    score = "no answer key" if r["accuracy"] is None else (
        f"accuracy {100 * r['accuracy']:.1f}% (95% CI {100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f})")
    console.print(f"eval: {r['n_questions']} questions, {score}, {r['fallbacks']} fallbacks, "
                  f"{r['questions_per_s']} questions/s -> {out}", highlight=False, soft_wrap=True)


@command("report")
def report_cmd(
    results: Annotated[list[Path], typer.Argument(help="results.json files (eval, eval-general, or lm-eval's).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (report.md, report.html, plots).")],
    cost: Annotated[list[str] | None, typer.Option("--cost", help="LABEL=USD per 0.1M tokens; repeatable.")] = None,
) -> None:
    """Markdown + HTML report: runs beside published AstroMLab-1 scores, score-vs-cost plot."""
    from benchmarks.report import build_report, parse_costs

    paths = build_report(results, out, costs=parse_costs(cost or []))
    console.print(f"report: {', '.join(str(p) for p in paths.values())}", highlight=False, soft_wrap=True)


@command("eval-general")
def eval_general_cmd(
    model: Annotated[str, typer.Option("--model", help="Model folder, Hub id or `embedded`.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    tasks: Annotated[str | None, typer.Option(help="Comma-separated lm-eval tasks; default Open LLM Leaderboard v2.")] = None,
    dtype: Annotated[Dtype, typer.Option(help="Weights precision.")] = "bfloat16",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    limit: Annotated[int | None, typer.Option(min=1, help="Examples per task (smoke runs).")] = None,
    lm_eval: Annotated[str | None, typer.Option("--lm-eval", help="Path to the lm_eval executable.")] = None,
) -> None:
    """General benchmarks (IFEval, BBH, MATH hard, GPQA, MuSR, MMLU-PRO) through lm-evaluation-harness."""
    from benchmarks.general import run_general

    r = run_general(model, out, tasks=tasks.split(",") if tasks else None, dtype=dtype, batch_size=batch_size,
                    limit=limit, lm_eval=lm_eval)
    console.print(f"eval-general: {len(r['scores'])} tasks -> {out}", highlight=False, soft_wrap=True)


@command("export-lm-eval")
def export_lm_eval_cmd(
    data: Annotated[str, typer.Option("--data", help="Keyed MCQ file, folder or Hub id.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the task YAML and its data file.")],
    task: Annotated[str, typer.Option(help="Task name.")] = "astromlab1",
    few_shot: Annotated[int, typer.Option("--few-shot", min=0)] = 0,
    answer_key: Annotated[Path | None, typer.Option("--answer-key", exists=True, dir_okay=False)] = None,
) -> None:
    """Export MCQs and the base-token prompt as an lm-evaluation-harness task (use --include_path OUT)."""
    from benchmarks.lm_eval_export import export_task, lm_eval_command

    path = export_task(data, out, task=task, few_shot=few_shot, answer_key=answer_key)
    console.print(f"export-lm-eval: {path} (the folder can be moved); run it with\n  "
                  f"{lm_eval_command(task, out)}", highlight=False, soft_wrap=True)


@command("build-corpus")
def build_corpus_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output dataset folder (HF layout: data/*.parquet).")],
    eprints: Annotated[list[Path] | None, typer.Option(
        "--eprints", help="Folder of e-prints or arXiv bulk tars; repeatable.")] = None,
    from_catalog: Annotated[bool, typer.Option(
        "--from-catalog/--no-from-catalog", metavar="", help="Download the e-prints of the papers harvested into the catalog, then build.")] = False,
    eprint_url: Annotated[str, typer.Option(help="arXiv e-print endpoint (for --from-catalog).")] = "https://arxiv.org/e-print/",
    wikipedia: Annotated[list[str] | None, typer.Option(
        help="Wikipedia pages-articles XML(.bz2) dump, wikimedia/wikipedia Parquet path or Hub id; repeatable.")] = None,
    categorylinks: Annotated[Path | None, typer.Option(help="page,category CSV for category-graph selection.")] = None,
    docs: Annotated[list[Path] | None, typer.Option(help="Folder of textbooks/local .txt .md .tex .pdf; repeatable.")] = None,
    license: Annotated[str | None, typer.Option(help="Licence stored on every --docs document (required with --docs).")] = None,
    recipe: Annotated[Path | None, typer.Option(help="Recipe YAML overriding astrodata/recipes/corpus.yaml.")] = None,
    benchmark: Annotated[list[Path] | None, typer.Option(
        help="Benchmark question file to decontaminate against (MCQ parquet/jsonl/csv); repeatable.")] = None,
    workdir: WorkdirOpt = Path("astrodata-work"),
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    timeout: Annotated[float, typer.Option(help="Per-document wall-clock limit, seconds.")] = 120.0,
    limit: Annotated[int | None, typer.Option(help="Take only the first N documents.")] = None,
    shard: Annotated[str | None, typer.Option(help="Run only shard K/N of phase 1 (e.g. 2/8); merge later.")] = None,
    bbl: Annotated[str, typer.Option(help="Bibliography .bbl: inline | drop.")] = "inline",
    citations: Annotated[str, typer.Option(help="Citations: marker | keys | drop.")] = "marker",
    flush_every: Annotated[int, typer.Option(
        "--flush-every", help="Documents per extracted shard: the most a kill -9 loses (also written every minute).")] = 200,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Try every recorded failure again (timeouts and crashed workers always are).")] = False,
    executor: Annotated[str, typer.Option(help="Phase 1 runs: local | ray | slurm.")] = "local",
    shards: Annotated[int, typer.Option(help="ray/slurm: number of phase-1 shards.")] = 8,
    ray_address: Annotated[str, typer.Option("--ray-address", help="ray.init address: local (start one) | auto | "
                                                                   "ray://host:port.")] = "local",
    submit: Annotated[bool, typer.Option("--submit", help="slurm: submit the jobs (else only write them).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="slurm: print the scripts, submit nothing.")] = False,
) -> None:
    """Build the corpus dataset from arXiv e-prints (resumable: re-run to continue)."""
    from astrodata.core.control import Interrupted
    from astrodata.corpus.build import CorpusOptions, build_corpus, parse_shard
    from astrodata.corpus.executors import run_corpus

    if not (eprints or from_catalog or wikipedia or docs):
        raise UserError("nothing to build from: give --eprints, --from-catalog, --wikipedia and/or --docs")
    opts = options(CorpusOptions, {"timeout_s": "--timeout", "benchmarks": "--benchmark"},
                   out=out, eprints=eprints or [], workers=workers, timeout_s=timeout, limit=limit,
                   shard=parse_shard(shard) if shard else None, bbl=bbl, citations=citations,
                   from_catalog=from_catalog, eprint_url=eprint_url, wikipedia=wikipedia or [],
                   categorylinks=categorylinks, docs=docs or [], license=license, recipe=recipe,
                   benchmarks=benchmark or [], flush_every=flush_every, retry_failed=retry_failed)
    if executor == "slurm":
        if dry_run:
            from astrodata.corpus.executors import slurm_scripts

            for name, text in slurm_scripts(workdir, opts, shards).items():
                typer.echo(f"# --- {name}\n{text}")
            return
        scripts = run_corpus(workdir, opts, executor="slurm", shards=shards, submit=submit)["slurm"]
        console.print(f"build-corpus: SLURM scripts {', '.join(scripts['scripts'])}"
                      + (f"; submitted jobs {', '.join(scripts['submitted'])}" if submit else
                         "; submit with the submit.sh beside them (or --submit)"), highlight=False, soft_wrap=True)
        return
    try:
        summary = run_corpus(workdir, opts, executor=executor, shards=shards, address=ray_address) \
            if executor != "local" else build_corpus(workdir, opts)
    except Interrupted as exc:
        console.print(exc.message(), highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    if opts.shard is None:
        from cards.render import write_corpus_card

        write_corpus_card(out)
    extracted = ", ".join(f"{n} {src}" for src, n in summary["extracted"].items()) or "0"
    console.print(
        f"build-corpus: extracted {extracted}; {summary['failed']} failed, {summary['dropped']} dropped by "
        f"filters (reasons in {workdir}/catalog.duckdb: errors, documents); "
        f"{summary['skipped_already_done']} already done"
        + (f"; wrote {summary['output']['documents']} documents ({summary['output']['tokens']:,} tokens, "
           f"{summary['output']['duplicates_removed']} duplicates removed) to {out}" if "output" in summary else ""),
        highlight=False,
    )
    if "output" in summary:
        console.print(f"next: astrodata build-qa --corpus {out} --out qa --limit 1 --workdir {workdir}   "
                      f"(a dry run of QA generation on the first paper with the embedded model)\n"
                      f"      astrodata sql \"SELECT status, count(*) FROM documents GROUP BY 1\" --workdir {workdir}\n"
                      f"      astrodata status --workdir {workdir}", highlight=False)


@command("build-qa")
def build_qa_cmd(
    corpus: Annotated[Path, typer.Option("--corpus", help="Corpus dataset folder (build-corpus output).")],
    out: Annotated[Path, typer.Option("--out", help="Output dataset folder (QA layout: data/*.parquet).")],
    workdir: WorkdirOpt = Path("astrodata-work"),
    limit: Annotated[int | None, typer.Option(help="Take only the first N documents.")] = None,
    endpoint: Annotated[list[str] | None, typer.Option(
        help="OpenAI-compatible base URL (key from $OPENAI_API_KEY); repeat for several servers of the same "
             "model (requests spread over them, failover); default: the embedded model.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name at the endpoint.")] = None,
    recipe: Annotated[Path | None, typer.Option(help="Recipe YAML overriding astrodata/recipes/qa.yaml.")] = None,
    dialect: Annotated[str | None, typer.Option(
        help="Structured output: auto | json_schema | json_object_schema | none.")] = None,
    batch_write: Annotated[Path | None, typer.Option(
        "--batch-write", help="Write uncached requests as an OpenAI Batch API JSONL file instead of sending them.")] = None,
    batch_ingest: Annotated[list[Path] | None, typer.Option(
        "--batch-ingest", help="Store Batch API result files' replies in the cache first; repeatable.")] = None,
    max_failed_share: Annotated[float | None, typer.Option(
        "--max-failed-share", help="Exit non-zero when more than this share of requests fail for good "
                                   "(default: only when all of them do).")] = None,
    batch_split: Annotated[int | None, typer.Option(
        "--batch-split", help="Split --batch-write into N files (one per node for `vllm run-batch`).")] = None,
) -> None:
    """Generate graded QA pairs, summaries and metadata tasks from a corpus, plus the SFT mix (resumable)."""
    from astrodata.core.control import Interrupted
    from astrodata.qa.build import build_qa

    overrides = {"engine": {"max_failed_share": max_failed_share}} if max_failed_share is not None else None
    try:
        stats = build_qa(corpus, out, workdir, limit=limit,
                         endpoint=endpoint[0] if endpoint and len(endpoint) == 1 else endpoint, model=model,
                         recipe=recipe, dialect=dialect, batch_write=batch_write, batch_ingest=batch_ingest,
                         batch_split=batch_split, overrides=overrides)
    except Interrupted as exc:
        console.print(exc.message(), highlight=False, soft_wrap=True)
        import threading

        from astrodata.qa.backends import GENERATION_THREAD

        if any(t.name == GENERATION_THREAD and t.is_alive() for t in threading.enumerate()):
            # a model load or batch still inside torch: an interpreter shutdown would wait for it or
            # abort on its threads; the catalog is already closed and every reply committed
            sys.stderr.flush()
            os._exit(130)
        raise typer.Exit(130) from None
    engine = stats["engine"]
    spent = (f"{engine['requests_sent']} requests sent, {engine['cache_hits']} cached, "
             f"{engine['failed']} failed, {engine['rejected']} rejected, "
             f"{engine['tokens_in'] + engine['tokens_out']:,} tokens, ${engine['cost_usd']:.4f}")
    if stats.get("failure"):
        raise UserError(f"build-qa: {stats['failure']}; {spent}; reasons in {workdir}/catalog.duckdb "
                        "(generation_requests, errors)")
    if "output" not in stats:
        console.print(f"build-qa: wrote {stats['batch_requests']} requests to {', '.join(stats['batch_files'])}; "
                      f"run them, then --batch-ingest the results ({spent})", highlight=False, soft_wrap=True)
        return
    from cards.render import write_qa_card

    write_qa_card(out)
    items = ", ".join(f"{n} {k}" for k, n in sorted(stats["output"].items())) or "no items"
    console.print(f"build-qa: {stats['documents']} documents -> {items} in {out}; {spent}; "
                  f"failures and drops in {workdir}/catalog.duckdb (errors, qa_items, generation_requests)",
                  highlight=False, soft_wrap=True)


@command("harvest")
def harvest_cmd(
    method: Annotated[str, typer.Option("--method", help="api | oai | snapshot")],
    category: Annotated[list[str] | None, typer.Option("--category", help="astro-ph, astro-ph.CO, gr-qc, ...; "
                                                       "repeatable (default: astro-ph and gr-qc).")] = None,
    date_from: Annotated[str | None, typer.Option("--from", help="First date, YYYY-MM-DD.")] = None,
    date_until: Annotated[str | None, typer.Option("--until", help="Last date, YYYY-MM-DD.")] = None,
    snapshot: Annotated[Path | None, typer.Option("--snapshot", help="Metadata snapshot (.json, .gz, .zip).")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="API or OAI-PMH endpoint override.")] = None,
    metadata_prefix: Annotated[str, typer.Option("--metadata-prefix", help="oai: arXivRaw | arXiv.")] = "arXivRaw",
    arxiv_id: Annotated[list[str] | None, typer.Option("--id", help="api: fetch these ids; repeatable.")] = None,
    workdir: WorkdirOpt = Path("astrodata-work"),
) -> None:
    """Harvest arXiv metadata into the catalog's papers table (API, OAI-PMH or the snapshot)."""
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    from astrodata.core.progress import RunProgress as Progress
    from astrodata.core.workspace import Workspace
    from astrodata.sources.arxiv_meta import DEFAULT_CATEGORIES, harvest

    with Workspace(workdir) as ws, Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                            TimeElapsedColumn(), console=console) as progress:
        bar = progress.add_task(f"harvest {method}", total=None)

        def show(s: Any) -> None:
            progress.update(bar, description=f"harvest {method}: {s.requests} requests, {s.seen} records, "
                                             f"{s.inserted} new, {s.updated} updated, {s.errors} errors")

        stats = harvest(ws, method, category or list(DEFAULT_CATEGORIES), date_from, date_until,
                        snapshot=snapshot, base_url=base_url, metadata_prefix=metadata_prefix, ids=arxiv_id,
                        progress=show)
    console.print(
        f"harvest {method}: {stats.seen} records seen, {stats.inserted} new, {stats.updated} updated, "
        f"{stats.unchanged} unchanged, {stats.filtered_out} outside the categories/dates, {stats.errors} errors "
        f"(in {workdir}/catalog.duckdb: papers, errors for run {stats.run_id})",
        highlight=False,
    )


@command("train")
def train_cmd(
    stage: Annotated[Literal["cpt", "sft"], typer.Argument(help="cpt (continued pre-training) or sft (fine-tuning).")],
    config: Annotated[str, typer.Option("--config", help="YAML config file, or a shipped config's name "
                                                        "(smollm2-cpu-cpt, smollm2-cpu-sft, astrosage-8b-cpt, ...).")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. max_steps=20.")] = None,
) -> None:
    """Train with the Hugging Face Trainer (CPT on a corpus dataset, SFT on a QA dataset)."""
    import importlib

    from training.config import CPTConfig, SFTConfig, find_config, load_config

    cfg = load_config(CPTConfig if stage == "cpt" else SFTConfig, find_config(config), overrides)
    result = importlib.import_module(f"training.{stage}").run(cfg)
    console.print(f"{stage}: {result.global_step} steps, final loss "
                  f"{result.losses[-1][1] if result.losses else float('nan'):.4f}, "
                  f"{result.tokens_per_second:.0f} tokens/s, model in {result.output_dir}", highlight=False)


@command("merge")
def merge_cmd(
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="MODEL:WEIGHT, once per input model; MODEL is a folder, a Hub id or `embedded`.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output model folder.")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="float32, bfloat16 (default) or float16.")] = None,
    base_from: Annotated[Path | None, typer.Option(
        "--base-from", help="Copy config/tokenizer/generation config/chat template from here (the instruct "
                            "model); default the first --model.")] = None,
    max_shard_size: Annotated[str | None, typer.Option("--max-shard-size", help="Output shard size (5GB).")] = None,
    config: Annotated[str | None, typer.Option("--config", help="Merge YAML, or a shipped config's name "
                                                                 "(astrosage-8b-merge); options given here override it.")] = None,
) -> None:
    """Linear merge of safetensors models, shard by shard (AstroSage: 75% CPT+SFT, 25% instruct)."""
    from training.config import MergeConfig, find_config, load_config
    from training.merge import merge, parse_model_spec

    given = {"models": [parse_model_spec(m) for m in model or []] or None, "out": out, "dtype": dtype,
             "base_from": base_from, "max_shard_size": max_shard_size}
    overrides = {k: v for k, v in given.items() if v is not None}  # options given override the file
    summary = merge(load_config(MergeConfig, find_config(config) if config else None, overrides))
    console.print(f"merge: {summary['tensors']} tensors in {summary['shards']} shard(s), "
                  f"{summary['bytes'] / 1e9:.2f} GB -> {summary['out']} (config and tokenizer from "
                  f"{summary['metadata_from']})", highlight=False)


@command("publish")
def publish_cmd(
    path: Annotated[Path, typer.Argument(help="Corpus, QA set, evaluation report or model folder.")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="OWNER/NAME on the Hugging Face Hub.")],
    repo_type: Annotated[str | None, typer.Option(
        "--repo-type", help="dataset | model (default: recognised from the folder).")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the repo private.")] = False,
    revision: Annotated[str | None, typer.Option("--revision", help="Branch to commit to (created if missing).")] = None,
    commit_message: Annotated[str | None, typer.Option("--commit-message")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the files and card metadata; send nothing.")] = False,
    workdir: WorkdirOpt = Path("astrodata-work"),
) -> None:
    """Publish to the Hugging Face Hub (token from HF_TOKEN or `hf auth login`); recorded in the catalog."""
    import yaml

    from cards.publish import publish

    if repo_type not in (None, "dataset", "model"):
        raise UserError(f"--repo-type must be dataset or model, got {repo_type!r}")
    r = publish(path, repo_id, repo_type=repo_type, private=private, revision=revision,
                commit_message=commit_message, dry_run=dry_run, workdir=workdir)
    if dry_run:
        print(f"would upload {len(r['files'])} files ({r['bytes']:,} bytes) of a {r['kind']} to "
              f"{r['repo_type']} repo {repo_id}@{r['revision']}:")
        for name, size in r["files"]:
            print(f"  {name}  {size:,}")
        print("card metadata:\n" + yaml.safe_dump(r["metadata"], sort_keys=False, allow_unicode=True), end="")
        return
    state = "new commit" if r["new_commit"] else "unchanged, no new commit"
    console.print(f"publish: {len(r['files'])} files ({r['bytes']:,} bytes) -> {r['url']} @ {r['revision']} "
                  f"({state} {r['commit_id'][:12]})", highlight=False, soft_wrap=True)


@command("status")
def status_cmd(
    workdir: WorkdirOpt = Path("astrodata-work"),
    last: Annotated[int, typer.Option("--last", min=1, help="Show the last N runs.")] = 10,
) -> None:
    """What the runs in a workspace are doing or did: stage, done/total, failures, last update.

    Reads the runs' status files (WORKDIR/runs/*.json), so it works while a run holds the catalog."""
    from astrodata.core.workspace import run_statuses

    if not workdir.is_dir():
        raise UserError(f"no workspace at {workdir}")
    records = run_statuses(workdir)[-last:]
    if not records:
        typer.echo(f"no runs recorded in {workdir}/runs")
        return
    for r in records:
        typer.echo(f"{r['run_id']}  {r['command']}  {r['status']}  started {r['started_at']}  "
                   f"updated {r['updated_at']}")
        for stage, st in (r.get("stages") or {}).items():
            total = "?" if st.get("total") is None else st["total"]
            eta = "" if st.get("eta_s") is None or r["status"] != "running" else f", ETA {st['eta_s']} s"
            typer.echo(f"    {stage}: {st['done']}/{total} done, {st['failures']} failures, "
                       f"{st.get('rate_per_s', 0)}/s{eta}")


@command("sql")
def sql_cmd(
    query: Annotated[str, typer.Argument(help='SQL on the catalog, e.g. "SELECT status, count(*) FROM documents '
                                              'GROUP BY 1".')],
    workdir: WorkdirOpt = Path("astrodata-work"),
    csv: Annotated[bool, typer.Option("--csv/--table", metavar="", help="CSV for scripts, or a table.")] = False,
) -> None:
    """Query the workspace catalog, read-only (DuckDB's own `duckdb` CLI works too, if installed)."""
    import duckdb

    path = workdir / "catalog.duckdb"
    if not path.is_file():
        raise UserError(f"no catalog at {path}")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        raise UserError(f"{path} is held by a running command (DuckDB lets one process open it); "
                        f"`astrodata status --workdir {workdir}` shows its progress") from None
    with con:
        if not csv:
            relation = con.sql(query)
            if relation is not None:
                relation.show(max_width=10_000, max_rows=200)
            return
        import csv as csv_module
        import sys

        result = con.execute(query)
        writer = csv_module.writer(sys.stdout)
        writer.writerow([c[0] for c in result.description or []])
        while rows := result.fetchmany(10_000):
            writer.writerows(rows)


@command("run")
def run_cmd(
    recipe: Annotated[str, typer.Argument(help="Run recipe YAML, or a shipped one: demo.yaml, astrosage-8b.yaml.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="a.b=value overrides, e.g. sft.settings.max_steps=4.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Stop after this stage.")] = None,
    only: Annotated[str | None, typer.Option("--only", help="Run only this stage (its inputs must exist).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (what runs, what is up to date, why).")] = False,
    publish: Annotated[bool, typer.Option("--publish", help="Also run the publish stage.")] = False,
    submit: Annotated[bool, typer.Option("--submit", help="corpus executor slurm: submit the jobs.")] = False,
) -> None:
    """Run the whole pipeline from one recipe: harvest -> corpus -> qa -> cpt -> sft -> merge -> eval -> report
    -> cards (-> publish); stages whose settings and inputs are unchanged are skipped."""
    from astrodata.run.pipeline import run_pipeline
    from astrodata.run.recipe import load_run_recipe
    from astrodata.run.report import table

    spec = load_run_recipe(recipe, overrides or [])
    # a log or a cluster job gets the summary table unwrapped (rich assumes 80 columns off a terminal)
    out = Console() if sys.stdout.isatty() else Console(width=220)

    def show(ctx: Any, steps: list[Any]) -> None:
        out.print(table(ctx, steps, f"astrodata run {recipe}: " + ("plan (--dry-run)" if dry_run else ctx.run_id)))

    ctx, steps = run_pipeline(spec, until=until, only=only, dry_run=dry_run, publish=publish, submit=submit,
                              log=lambda line: console.print(line, highlight=False, soft_wrap=True), show=show)
    corpus = next(s for s in steps if s.stage.name == "corpus")
    if dry_run and spec.corpus.executor == "slurm" and corpus.action in ("run", "resume"):
        from astrodata.corpus.executors import slurm_scripts
        from astrodata.run.stages import corpus_options

        for name, text in slurm_scripts(ctx.root, corpus_options(ctx), spec.corpus.shards, spec.corpus.slurm).items():
            typer.echo(f"# --- {name}\n{text}")
    if not dry_run:
        ran = [s.stage.name for s in steps if s.outcome in ("ran", "resumed")]
        console.print(f"run: {len(ran)} stage(s) ran ({', '.join(ran) or 'none: every stage is up to date'}); "
                      f"report in {ctx.root / 'report.md'}", highlight=False, soft_wrap=True)
        for command, why in RUN_NEXT:
            console.print(f"next: {command.format(root=shlex.quote(str(ctx.root)))}   # {why}", highlight=False,
                          soft_wrap=True)


# What to try after `astrodata run` (printed with the run folder filled in).
RUN_NEXT = (
    ("astrodata sql \"SELECT kind, status, reason, count(*) AS n FROM qa_items GROUP BY ALL ORDER BY n DESC\" "
     "--workdir {root}", "what the QA build kept and dropped, and why"),
    ("astrodata sql \"SELECT run_id, stage, status, seconds FROM stage_runs ORDER BY started_at\" --workdir {root}",
     "every stage of every run in this folder"),
    ("astrodata build-qa --corpus {root}/corpus --out qa-8b --endpoint http://127.0.0.1:8000/v1 --model MODEL",
     "real QA from your own server (vLLM, llama.cpp)"),
)


if __name__ == "__main__":
    app()
