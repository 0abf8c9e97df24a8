"""Dataset cards rendered from the real build artifacts (the shards and `stats.json`).

The figures in a card are read back from the output folder, never passed in by hand, so a card
cannot disagree with the data it describes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import pyarrow.dataset as pads

TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True)


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "n>10M"


def _stats(out: Path) -> dict:
    path = out / "stats.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _render(out: Path, template: str, **fields: object) -> Path:
    path = out / "README.md"
    path.write_text(_environment().get_template(template).render(
        version=version("astrodata"), built_at=datetime.now(UTC).strftime("%Y-%m-%d"), **fields))
    return path


CC_URL = re.compile(r"creativecommons\.org/(?:licenses/([a-z-]+)|publicdomain/(zero))/(\d\.\d)", re.I)
HUB_ID = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


def hub_license(value: str) -> str | None:
    """The Hub licence id of a row's licence (a Creative Commons URL, or an id such as `CC-BY-SA-4.0`), or None
    when the Hub has none for it (arXiv's own licences): those go under `other`."""
    if m := CC_URL.search(value):
        return f"cc0-{m.group(3)}" if m.group(2) else f"cc-{m.group(1).lower()}-{m.group(3)}"
    lowered = value.strip().lower()
    if "://" in lowered or not HUB_ID.match(lowered):
        return None
    return lowered


def _license_slug(value: str) -> str:
    """A `license_name` for a licence without a Hub id: `http://arxiv.org/licenses/nonexclusive-distrib/1.0/` ->
    `arxiv-nonexclusive-distrib-1.0`."""
    text = re.sub(r"^https?://(www\.)?", "", value.strip().lower()).replace(".org/licenses/", "-")
    return re.sub(r"[^a-z0-9.]+", "-", text).strip("-.") or "other"


def license_metadata(licenses: list[str]) -> dict[str, str]:
    """Hub metadata for the licences of a dataset's rows: one Hub id; `other` + `license_name`/`license_link` for
    one licence without an id; `other` named `mixed-per-document` (linking the card) for several."""
    if len(licenses) == 1:
        lic = licenses[0]
        if hub := hub_license(lic):
            return {"license": hub}
        return {"license": "other", "license_name": _license_slug(lic),
                "license_link": lic if "://" in lic else "README.md"}
    return {"license": "other", "license_name": "mixed-per-document", "license_link": "README.md"}


def write_corpus_card(out_dir: str | Path, title: str = "astrodata astronomy corpus") -> Path:
    """Write `OUT/README.md` for a corpus dataset from its shards and stats.json.

    Only what the build did is stated: sources present in the rows, filters with their drop counts,
    decontamination only when benchmarks were given, dedup figures, the tokenizer; licences are counted per
    row (column `license`) and turned into Hub metadata by `license_metadata`."""
    from astrodata.sources.arxiv_meta import ARXIV_DEFAULT_LICENSE

    out = Path(out_dir)
    table = pads.dataset(out / "data", format="parquet").to_table(columns=["source", "n_tokens", "license"])
    sources = table.column("source").to_pylist()
    docs = Counter(sources)
    tokens: dict[str, int | None] = {}
    for src, n in zip(sources, table.column("n_tokens").to_pylist(), strict=True):
        tokens[src] = None if n is None or tokens.get(src, 0) is None else tokens.get(src, 0) + n
    total_tokens = None if any(v is None for v in tokens.values()) else sum(tokens.values())
    per_license: dict[str, Counter[str]] = {}
    for src, lic in zip(sources, table.column("license").to_pylist(), strict=True):
        per_license.setdefault(lic or "unknown", Counter())[src] += 1
    ordered = sorted(per_license.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    licenses = [{"label": f"`{lic}`" + (f" (Hub id `{hub_license(lic)}`)" if hub_license(lic) not in (None, lic) else ""),
                 "documents": sum(c.values()), "per_source": sorted(c.items())} for lic, c in ordered]
    meta = license_metadata([lic for lic, _ in ordered])
    license_yaml = "".join(f"{k}: {v}\n" for k, v in meta.items())
    stats = _stats(out)
    recipe = stats.get("recipe") or {}
    drops = stats.get("drops_per_filter", {})
    quality = [(k, v) for k, v in drops.items() if k not in ("decontamination", "dedup")]
    decontam = recipe.get("decontam") or {}
    tokenizer = (recipe.get("tokenizer") or {}).get("name")
    if tokenizer == "embedded":
        tokenizer = f"embedded ({EMBEDDED_HUB_ID})"
    return _render(
        out, "corpus.md.j2",
        title=title,
        license_yaml=license_yaml,
        size_category=_size_category(table.num_rows),
        sources=[{"name": s, "documents": docs[s], "tokens": tokens[s]} for s in sorted(docs)],
        source_names=set(docs),
        other_sources=sorted(set(docs) - {"arxiv", "wikipedia"}),
        total_documents=table.num_rows,
        total_tokens=total_tokens,
        tokenizer=tokenizer,
        licenses=licenses,
        arxiv_default=ARXIV_DEFAULT_LICENSE if ARXIV_DEFAULT_LICENSE in per_license else None,
        unknown=sum(per_license.get("unknown", {}).values()),
        wikipedia_selection={"either": "category graph or lexicon", "category": "category graph",
                             "lexicon": "lexicon"}.get((recipe.get("wikipedia") or {}).get("selection"),
                                                       "the recipe's selection"),
        drops=quality,
        dropped=sum(n for _, n in quality),
        decontam={**decontam, "dropped": drops.get("decontamination", 0)} if decontam.get("benchmarks") else None,
        dedup=({**stats["dedup"], "check": (recipe.get("dedup") or {}).get("check", "exact")}
               if stats.get("dedup") else None),
        dedup_threshold=(recipe.get("dedup") or {}).get("threshold"),
        errors=sorted((stats.get("errors_per_reason") or {}).items(), key=lambda kv: -kv[1]),
    )


def write_qa_card(out_dir: str | Path, title: str = "astrodata astronomy QA and SFT mix") -> Path:
    """Write `OUT/README.md` for a build-qa dataset from its shards and stats.json.

    The counts are DuckDB aggregates over the shards, so millions of rows are never loaded whole.
    Model names come from the rows; endpoint URLs and keys are never read, so none can reach the card."""
    out = Path(out_dir)
    with duckdb.connect() as con:
        con.read_parquet(str(out / "data" / "*.parquet")).create_view("qa")

        def counts(column: str) -> list[tuple[Any, int]]:
            return con.execute(f"SELECT {column}, count(*) AS n FROM qa WHERE {column} IS NOT NULL "
                               f"GROUP BY ALL ORDER BY n DESC, {column}").fetchall()

        total, papers = con.execute(
            "SELECT count(*), count(DISTINCT source_id) FILTER (WHERE kind <> 'instruct') FROM qa").fetchone()
        kinds, grades = sorted(counts("kind")), sorted(counts("grade"))
        generators, judges, prompts = counts("generator"), counts("judge"), counts("prompt_version")
    return _render(
        out, "qa.md.j2",
        title=title,
        size_category=_size_category(total),
        kinds=kinds,
        total=total,
        papers=papers,
        grades=grades,
        ungraded=total - sum(n for _, n in grades),
        generators=generators,
        judges=judges,
        prompts=prompts,
        stats=_stats(out),
    )


# -- model cards --------------------------------------------------------------------------------------
TRAINING_RECORD = "astrodata_training.json"  # written by training/run.py beside the model
MERGE_RECORD = "astrodata_merge.json"  # written by training/merge.py
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what `model: embedded` is
HUB_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _is_hub_id(ref: str) -> bool:
    return bool(HUB_REPO_ID.match(ref)) and not Path(ref).exists()


def _front_matter(path: Path) -> dict[str, Any]:
    import yaml

    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    m = re.match(r"^---\s*\n(.*?)\n---", text, re.S)
    meta = yaml.safe_load(m.group(1)) if m else None
    return meta if isinstance(meta, dict) else {}


def _is_embedded(ref: str) -> bool:
    """`embedded`, or the folder it is converted into."""
    from astrodata.core.models import CONVERTED_DIR, EMBEDDED_NAME, cache_dir

    return ref == EMBEDDED_NAME or Path(ref).resolve() == (cache_dir() / CONVERTED_DIR).resolve()


def model_origin(ref: str) -> tuple[str, list[str]]:
    """(label for the card, Hub ids this model derives from) of a model reference: `embedded`, a Hub id, or a
    local folder (whose own training record or card says what it derives from). Local paths never reach the card:
    a folder is labelled by its name."""
    if _is_embedded(ref):
        return f"{EMBEDDED_HUB_ID} (astrodata's embedded model)", [EMBEDDED_HUB_ID]
    folder = Path(ref)
    if _is_hub_id(ref):
        return f"[{ref}](https://huggingface.co/{ref})", [ref]
    for record in (TRAINING_RECORD, MERGE_RECORD):
        if (folder / record).is_file():
            bases = json.loads((folder / record).read_text()).get("base_models", [])
            return f"`{folder.name}` (astrodata output, from {', '.join(bases) or 'an unrecorded base'})", bases
    bases = _front_matter(folder / "README.md").get("base_model") or []
    bases = [bases] if isinstance(bases, str) else list(bases)
    return f"`{folder.name}` (local folder)", bases


def base_license(ref: str) -> str | None:
    """The licence id of a base model: from its card when it is a local folder with one, Apache-2.0 for the
    embedded SmolLM2 (its Hub card's licence); None when unknown."""
    if _is_embedded(ref):
        return "apache-2.0"
    return _front_matter(Path(ref) / "README.md").get("license")


def _params(model_dir: Path) -> int | None:
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(file, "pt") as fh:
            for name in fh.keys():
                shape = fh.get_slice(name).get_shape()
                n = 1
                for d in shape:
                    n *= d
                total += n
    return total


def _human(n: int | None) -> str:
    if n is None:
        return "unknown"
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def _results(paths: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    astro, general = [], []
    for path in paths:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        (astro if data.get("benchmark") == "AstroMLab-1" else general if data.get("benchmark") == "general"
         else []).append(data)
    return astro, general


def write_model_card(model_dir: Path, results: list[Path] | None = None, *, datasets: list[str] | None = None,
                     costs: dict[str, float] | None = None, name: str | None = None,
                     license: str | None = None) -> Path:
    """Write `MODEL_DIR/README.md` from the model's artifacts; returns its path.

    Read: `config.json` and the safetensors headers (architecture, parameter count, dtype), the training record
    (`astrodata_training.json`: base model, dataset, config, hardware, steps, tokens seen, final loss) or the merge
    record (`astrodata_merge.json`: inputs and weights), and the evaluation files: `results` (AstroMLab-1
    `results.json`, `general_results.json`), default those found in MODEL_DIR and its `eval*/` folders. The
    score-vs-cost plot is drawn by `benchmarks.report` as `MODEL_DIR/score_vs_cost.png` when there are AstroMLab-1
    results. `datasets` are Hub ids of the training data for the metadata (local folders are not ids). `license`
    defaults to that of the base model's card when known, else `other`. Anything not found is said to be
    unmeasured or unrecorded; no figure comes from anywhere but these files."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    training = json.loads((model_dir / TRAINING_RECORD).read_text()) if (model_dir / TRAINING_RECORD).is_file() else None
    merge = json.loads((model_dir / MERGE_RECORD).read_text()) if (model_dir / MERGE_RECORD).is_file() else None
    record = training or merge or {}
    if results is None:
        results = sorted({*model_dir.glob("results.json"), *model_dir.glob("general_results.json"),
                          *model_dir.glob("eval*/results.json"), *model_dir.glob("eval*/general_results.json")})
    astro_runs, general_runs = _results(list(results))
    name = name or model_dir.name
    base_models = record.get("base_models", [])
    keyed = [r for r in astro_runs if r.get("accuracy") is not None]
    astro = [{"label": name, "method": r["method"], "n": r["n_questions"],
              "accuracy": f"{100 * r['accuracy']:.1f}%",
              "ci": f"{100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f}%",
              "prompt_hash": r["prompt_hash"][:12]} for r in keyed]
    astro += [{"label": name, "method": r["method"], "n": r["n_questions"], "accuracy": "not measured (no answer key)",
               "ci": "-", "prompt_hash": r["prompt_hash"][:12]} for r in astro_runs if r.get("accuracy") is None]
    general = [{"task": task, **score} for r in general_runs for task, score in sorted(r.get("scores", {}).items())]
    plot, plot_has_model = None, False
    if keyed:
        import shutil
        import tempfile

        from benchmarks.report import build_report, run_label

        with tempfile.TemporaryDirectory() as tmp:  # only the plot is kept: report.md names local data paths
            png = build_report([Path(p) for p in results], tmp, costs=costs)["png"]
            shutil.copy2(png, model_dir / "score_vs_cost.png")
        plot = "score_vs_cost.png"
        plot_has_model = any(run_label(r) in (costs or {}) or r["model"] in (costs or {}) for r in keyed)
    license = license or record.get("license") or "other"
    metadata: dict[str, Any] = {"library_name": "transformers", "license": license}
    if license == "other":
        metadata |= {"license_name": "see-base-models", "license_link": "README.md"}
    if base_models:
        metadata["base_model"] = base_models if len(base_models) > 1 else base_models[0]
    if datasets:
        metadata["datasets"] = list(datasets)
    metadata["tags"] = ["astronomy", "astrophysics", "astrodata", *(["merge"] if merge else []),
                        *([training["stage"]] if training else [])]
    metadata["pipeline_tag"] = "text-generation"
    index = [{"task": {"type": "multiple-choice", "name": "Multiple choice"},
              "dataset": {"name": f"AstroMLab-1 ({r['n_questions']} questions, data sha256 {r['data_hash'][:12]})",
                          "type": r["data"] if _is_hub_id(r["data"]) else "astromlab1"},
              "metrics": [{"type": "accuracy", "value": round(100 * r["accuracy"], 2),
                           "name": f"accuracy ({r['method']}, {r['n_questions']} questions)"}],
              "source": {"name": "astrodata eval", "url": "https://arxiv.org/abs/2407.11194"}} for r in keyed]
    index += [{"task": {"type": "text-generation", "name": "Text Generation"},
               "dataset": {"name": g["task"], "type": g["task"]},
               "metrics": [{"type": g["metric"], "value": round(g["value"], 2), "name": f"{g['metric']} (0-100)"}],
               "source": {"name": "lm-evaluation-harness via astrodata eval-general",
                          "url": "https://github.com/EleutherAI/lm-evaluation-harness"}} for g in general]
    if index:
        metadata["model-index"] = [{"name": name, "results": index}]
    import yaml

    text_cfg = config.get("text_config", config)
    params = _params(model_dir)
    training_rows = []
    if training:
        c = training["config"]
        training_rows = [
            ("stage", training["stage"].upper()), ("steps", f"{training['global_step']:,}"),
            ("sequence length", c["seq_len"]),
            ("batch (per device x accumulation x devices)",
             f"{c['batch_size']} x {c['grad_accum']} x {training['world_size']} = "
             f"{c['batch_size'] * c['grad_accum'] * training['world_size']} sequences"),
            ("learning rate", f"{c['learning_rate']:g}, cosine" + (f" to {c['min_lr_rate']:g} x peak" if c.get("min_lr_rate") else "")
             + f", warmup {c['warmup']:g}"),
            ("precision", training["precision"]), ("hardware", training["hardware"]),
            ("tokens seen", f"{training['tokens_seen']:,}"),
            ("final training loss", f"{training['final_loss']:.4f}" if training.get("final_loss") is not None else "not logged"),
            ("training time", f"{training['train_runtime']:.0f} s"),
        ]
    datasets_rows = ([{"stage": training["stage"].upper(), **training["dataset"]}] if training else
                     merge.get("datasets", []) if merge else [])
    small = params is not None and params < 1e9
    summary = (f"A linear merge of {len(merge['models'])} models made with astrodata, following the last step of "
               "AstroSage-Llama-3.1-8B (75% CPT+SFT model, 25% instruct model)." if merge else
               f"{training['stage'].upper()} of {base_models[0] if base_models else 'a base model'} on astronomy data "
               "made with astrodata, following the AstroSage-Llama-3.1-8B recipe." if training else
               "An astronomy language model described from its files by astrodata.")
    return _render(
        model_dir, "model.md.j2", name=name, summary=summary,
        metadata_yaml=yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True),
        arch=", ".join(config.get("architectures") or [config.get("model_type", "unknown")]), params=_human(params),
        layers=text_cfg.get("num_hidden_layers"), hidden=text_cfg.get("hidden_size"), vocab=text_cfg.get("vocab_size"),
        dtype=config.get("dtype") or config.get("torch_dtype") or "unknown",
        base_models=[f"[{b}](https://huggingface.co/{b})" for b in base_models],
        license_text=f"`{license}`" + (" (the terms of the base models apply)" if license == "other" else ""),
        merge=merge and {**merge, "models": merge["models"]}, training=training, astro=astro,
        astro_note="accuracy with a 95% bootstrap interval; prompt hash = sha256 of the prompt file",
        general=general, plot=plot, plot_has_model=plot_has_model, datasets=datasets_rows,
        training_rows=training_rows, small=small)


def write_report_card(report_dir: Path) -> Path:
    """Write `REPORT_DIR/README.md` for an evaluation report published as a dataset repo of results: one row per
    run from its `results.json` / `general_results.json` (model, method, questions, accuracy with 95% CI, prompt
    hash). The licence is `unknown` until the user sets one in the card."""
    report_dir = Path(report_dir)
    astro, general = _results(sorted({*report_dir.glob("results.json"), *report_dir.glob("general_results.json"),
                                      *report_dir.glob("*/results.json"), *report_dir.glob("*/general_results.json")}))
    return _render(report_dir, "report.md.j2", runs=[{
        "model": Path(r["model"]).name, "method": r["method"], "n": r["n_questions"],
        "accuracy": "no answer key" if r.get("accuracy") is None else f"{100 * r['accuracy']:.1f}%",
        "ci": "-" if r.get("ci95") is None else f"{100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f}%",
        "prompt_hash": r["prompt_hash"][:12]} for r in astro],
        general=[{"model": Path(r["model"]).name, "task": t, **v} for r in general for t, v in sorted(r["scores"].items())],
        files=sorted(p.relative_to(report_dir).as_posix() for p in report_dir.rglob("*") if p.is_file()))
