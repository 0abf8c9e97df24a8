"""`astrodata publish`: push a corpus, a QA set, a model folder or an evaluation report to the Hugging Face Hub.

What is published is recognised from the folder itself: `data/*.parquet` (a corpus or QA dataset), `results.json` /
`general_results.json` / `report.md` (an evaluation report, published as a dataset repo of results, like the
leaderboards' details repos) or `config.json` with safetensors weights (a model). The card (`README.md`) is rendered
from the artifacts when the folder has none, and its metadata is validated locally (YAML syntax, the fields the Hub
requires, the `model-index` structure through `huggingface_hub`'s `ModelCardData`) before anything is sent.

The upload is `huggingface_hub`'s own: `create_repo(exist_ok=True)`, then `upload_folder`. In huggingface_hub 2.x
`upload_folder` is also the large-folder path (`upload_large_folder` was folded into it): with `hf_xet` installed it
streams the files, commits in batches and resumes when re-run; without Xet it makes one commit, and LFS objects
already on the Hub are not sent again (the LFS batch answer lists no upload action for them). Files whose content
equals the remote's are dropped from the commit, so re-publishing an unchanged folder makes no new commit.

Local paths never leave the machine: a results file written by `astrodata eval` names the model folder and the
question file as given (often absolute), Trainer's `trainer_state.json` its checkpoint folder. Every `.json` and
`.md` file (bar the card, checked already) is read before the upload and each absolute path on this machine in it
is cut to its last part (`/home/me/runs/merged` -> `merged`); when any file changed, the upload reads the folder
through `<folder>/.cache/astrodata-publish/` (links to the unchanged files, the cleaned copies beside them), so the
user's files stay as they are and `upload_folder` still does the uploading (and its resume cache lives there).

The token is `huggingface_hub.get_token()`: `HF_TOKEN` or the login cache (`hf auth login`), nothing else. It never
reaches a log line, the catalog, a card or an error message.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

# Never uploaded: Trainer checkpoints and pickled arguments (optimizer states, arbitrary pickles), tokenized-data
# caches, huggingface_hub's own upload cache, half-written outputs.
# (fnmatch patterns as `upload_folder` applies them: a trailing "/" means the folder and all below it)
IGNORE_PATTERNS = ["checkpoint-*/", "dataset-cache/", ".cache/", "*/.cache/", "*.partial/", "training_args.bin",
                   "optimizer.pt", "scheduler.pt", "rng_state*.pth", "*.lock"]
LICENSE_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")  # the Hub's rule for `license_name`
REPORT_FILES = ("results.json", "general_results.json", "report.md")
STAGING = Path(".cache") / "astrodata-publish"  # inside the published folder; `.cache/` is never uploaded
MAX_SCRUB_BYTES = 4 * 1024 * 1024  # larger .json/.md files (tokenizer.json) hold no paths of ours
# an absolute POSIX path (two or more parts) or a home-relative one, not part of a URL or a longer word
_LOCAL_PATH = re.compile(r"(?<![\w:/.~-])(?:~|/[\w.@+-]+)(?:/[\w.@+-]+)+/?")


class PublishError(ValueError):
    """Bad input to publish (folder, metadata, token, repo type): reported as one line, nothing sent."""


# -- what is being published ------------------------------------------------------------------------
def detect_kind(path: Path) -> tuple[str, str]:
    """(repo_type, kind) of a folder: ("dataset", "corpus" | "qa" | "report") or ("model", "model")."""
    if not path.is_dir():
        raise PublishError(f"{path}: not a folder")
    if any((path / "data").glob("*.parquet")):
        import pyarrow.parquet as pq

        first = sorted((path / "data").glob("*.parquet"))[0]
        names = set(pq.read_schema(first).names)
        return "dataset", "qa" if "messages" in names else "corpus"
    if (path / "config.json").is_file() and (any(path.glob("*.safetensors")) or
                                             (path / "model.safetensors.index.json").is_file()):
        return "model", "model"
    if any((path / name).is_file() for name in REPORT_FILES):
        return "dataset", "report"
    raise PublishError(f"{path} is neither a dataset (data/*.parquet), an evaluation report (results.json) nor a "
                       "model folder (config.json + safetensors)")


def list_files(path: Path) -> list[tuple[str, int]]:
    """(path in repo, bytes) of every file `upload_folder` will consider, filtered the way it filters them."""
    from huggingface_hub.utils import filter_repo_objects

    rels = sorted(f.relative_to(path).as_posix() for f in path.rglob("*") if f.is_file())
    kept = filter_repo_objects(rels, ignore_patterns=IGNORE_PATTERNS + [".git/", "*/.git/"])
    return [(rel, (path / rel).stat().st_size) for rel in kept]


def ensure_card(path: Path, kind: str) -> Path:
    """The folder's README.md, rendered from its artifacts when it has none."""
    card = path / "README.md"
    if card.is_file():
        return card
    from cards import render

    writer = {"corpus": render.write_corpus_card, "qa": render.write_qa_card, "model": render.write_model_card,
              "report": render.write_report_card}[kind]
    return writer(path)


# -- card metadata ----------------------------------------------------------------------------------
def card_metadata(text: str) -> dict[str, Any]:
    """The YAML block at the top of a card, parsed; PublishError for missing or malformed YAML."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not match:
        raise PublishError("README.md has no YAML metadata block (--- ... --- at the top)")
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 2}" if where else ""
        raise PublishError(f"README.md metadata is not valid YAML{line}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(meta, dict):
        raise PublishError("README.md metadata must be a YAML mapping")
    return meta


def validate_metadata(meta: dict[str, Any], repo_type: str) -> None:
    """Check what the Hub requires of a card's metadata; PublishError naming the first problem.

    License ids themselves are checked by the Hub, not here (huggingface_hub ships no list of them)."""
    licenses = meta.get("license")
    if not licenses:
        raise PublishError("README.md metadata has no `license`")
    for lic in licenses if isinstance(licenses, list) else [licenses]:
        if not isinstance(lic, str) or not LICENSE_NAME.match(lic):
            raise PublishError(f"README.md metadata: license {lic!r} is not a Hub licence id (lowercase, e.g. "
                               "cc-by-4.0; use `other` with license_name and license_link)")
    if "other" in (licenses if isinstance(licenses, list) else [licenses]):
        name, link = meta.get("license_name"), meta.get("license_link")
        if not isinstance(name, str) or not LICENSE_NAME.match(name):
            raise PublishError("README.md metadata: license `other` needs `license_name` (lowercase letters, digits, "
                               "'-' and '.')")
        if not isinstance(link, str) or not link.strip():
            raise PublishError("README.md metadata: license `other` needs `license_link` (a URL or a file in the repo)")
    for key in ("tags", "datasets", "language"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise PublishError(f"README.md metadata: `{key}` must be a list of strings")
    if repo_type == "dataset":
        from huggingface_hub import DatasetCardData

        DatasetCardData(**meta)
        for config in meta.get("configs") or []:
            if not isinstance(config, dict) or "config_name" not in config or "data_files" not in config:
                raise PublishError("README.md metadata: each of `configs` needs config_name and data_files")
        return
    from huggingface_hub import ModelCardData

    if "model-index" in meta:
        index = meta["model-index"]
        if not isinstance(index, list) or not all(isinstance(m, dict) and m.get("name") for m in index):
            raise PublishError("README.md metadata: `model-index` must be a list of {name, results}")
        for model in index:
            for result in model.get("results") or []:
                metrics = result.get("metrics") if isinstance(result, dict) else None
                if not (isinstance(result.get("task"), dict) and result["task"].get("type")
                        and isinstance(result.get("dataset"), dict) and result["dataset"].get("name")
                        and result["dataset"].get("type") and metrics):
                    raise PublishError("README.md metadata: every model-index result needs task.type, dataset.name, "
                                       "dataset.type and metrics")
                if not all(isinstance(m, dict) and m.get("type") and isinstance(m.get("value"), int | float)
                           for m in metrics):
                    raise PublishError("README.md metadata: every model-index metric needs a type and a numeric value")
    try:
        ModelCardData(**{k.replace("-", "_"): v for k, v in meta.items()})
    except (ValueError, KeyError, TypeError) as exc:
        raise PublishError(f"README.md metadata: {str(exc).splitlines()[0]}") from None


# -- publish ----------------------------------------------------------------------------------------
def _is_local_path(text: str) -> bool:
    """Whether `text` is an absolute path on this machine: `~/...`, or `/a/b...` whose top folder exists here
    (so `/s/Mpc` in a unit or `/**` in a vocabulary is not one)."""
    if text.startswith("~/"):
        return True
    top = text.split("/")[1] if text.startswith("/") else ""
    return bool(top) and os.path.isdir("/" + top)


def _cut(text: str) -> str:
    return _LOCAL_PATH.sub(lambda m: m.group().rstrip("/").rsplit("/", 1)[-1] if _is_local_path(m.group())
                           else m.group(), text)


def without_local_paths(path: Path, rel: str) -> bytes | None:
    """The content of the `.json`/`.md` file `rel` with every absolute local path cut to its last part, or None
    when it has none (or is not such a file, is the card, or is over MAX_SCRUB_BYTES)."""
    file = path / rel
    if rel == "README.md" or file.suffix not in (".json", ".md") or file.stat().st_size > MAX_SCRUB_BYTES:
        return None
    text = file.read_text(encoding="utf-8", errors="replace")
    if file.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError:
            return None

        def walk(v: Any) -> Any:
            if isinstance(v, dict):
                return {walk(k): walk(x) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x) for x in v]
            return _cut(v) if isinstance(v, str) else v

        cleaned = walk(data)
        return None if cleaned == data else (json.dumps(cleaned, indent=2, ensure_ascii=False) + "\n").encode()
    cleaned_text = _cut(text)
    return None if cleaned_text == text else cleaned_text.encode()


def _upload_source(path: Path, files: list[tuple[str, int]]) -> Path:
    """The folder `upload_folder` reads: `path` itself, or, when a file holds local paths, the staging folder
    STAGING of links to `path`'s files with the cleaned copies in place of those files."""
    cleaned = {rel: data for rel, _ in files if (data := without_local_paths(path, rel)) is not None}
    if not cleaned:
        return path
    stage = path / STAGING
    shutil.rmtree(stage, ignore_errors=True)
    for rel, _ in files:
        target = stage / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel in cleaned:
            target.write_bytes(cleaned[rel])
        else:
            target.symlink_to((path / rel).resolve())
    return stage


def _token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login` first")
    return token


def _record(workdir: Path | None, row: dict[str, Any]) -> None:
    from astrodata.core.workspace import DEFAULT_WORKDIR, Workspace

    with Workspace(workdir or DEFAULT_WORKDIR) as ws:
        ws.con.execute(
            "INSERT INTO publishes (published_at, repo_id, repo_type, kind, revision, commit_id, new_commit, "
            "private, files, bytes, url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [row["published_at"], row["repo_id"], row["repo_type"], row["kind"], row["revision"], row["commit_id"],
             row["new_commit"], row["private"], row["files"], row["bytes"], row["url"]])


def publish(path: Path, repo_id: str, *, repo_type: str | None = None, private: bool = False,
            revision: str | None = None, commit_message: str | None = None, dry_run: bool = False,
            workdir: Path | None = None) -> dict:
    """Publish the folder `path` to the Hub repo `repo_id` (OWNER/NAME) and record it in the catalog.

    Returns {repo_id, repo_type, kind, revision, files: [[path, bytes]...], bytes, metadata} plus, unless
    `dry_run`, {commit_id, new_commit, url}. Raises PublishError (one line, before anything is sent) for a folder
    that is not publishable, a `repo_type` that does not match it, invalid card metadata or a missing token;
    huggingface_hub's HfHubHTTPError for what the Hub refuses.
    """
    path = Path(path)
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not re.fullmatch(r"[^/\s]+/[^/\s]+", repo_id or ""):
        raise PublishError(f"--repo-id must look like OWNER/NAME, got {repo_id!r}")
    try:  # the Hub's own rules (characters, `--`/`..`, `.git`, length), checked before a dry run says yes
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PublishError(f"--repo-id {repo_id!r}: {str(exc).split(': ' + repr(repo_id))[0]}") from None
    detected, kind = detect_kind(path)
    if repo_type is not None and repo_type != detected:
        raise PublishError(f"{path} is a {detected} ({kind}), not a {repo_type}: drop --repo-type or publish it as a "
                           f"{detected} repo")
    card = ensure_card(path, kind)
    meta = card_metadata(card.read_text(encoding="utf-8"))
    validate_metadata(meta, detected)
    files = list_files(path)
    result: dict[str, Any] = {"repo_id": repo_id, "repo_type": detected, "kind": kind, "revision": revision or "main",
                              "files": [list(f) for f in files], "bytes": sum(n for _, n in files), "metadata": meta}
    if dry_run:
        return result
    token = _token()
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, repo_type=detected, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type=detected, exist_ok=True)
        before = api.repo_info(repo_id, repo_type=detected, revision=revision).sha
        info = api.upload_folder(repo_id=repo_id, folder_path=_upload_source(path, files), repo_type=detected,
                                 revision=revision,
                                 commit_message=commit_message or f"Publish {kind} with astrodata",
                                 ignore_patterns=IGNORE_PATTERNS)
    except Exception as exc:
        if token in str(exc):  # defensive: no message may carry the token
            raise RuntimeError(str(exc).replace(token, "<token>")) from None
        raise
    result |= {"commit_id": info.oid, "new_commit": info.oid != before, "url": str(url)}
    _record(workdir, {**result, "published_at": datetime.now(UTC).replace(tzinfo=None), "private": private,
                      "files": len(files)})
    return result
