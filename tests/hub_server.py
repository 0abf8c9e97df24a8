"""A Hugging Face Hub stand-in on 127.0.0.1 that the real `huggingface_hub` 2.4 and `datasets` clients talk to.

The Hub cannot be reached from the test machines and no Hub-compatible server ships on PyPI, so this
implements, in memory, the endpoints those clients call for publishing and loading: repo create (409 when it
exists), `/api/validate-yaml`, repo info, preupload, the Git LFS batch API with a PUT upload target, the NDJSON
commit, branch creation, tree listing, paths-info and file resolve (HEAD/GET with Range). Xet is not served:
clients must run with `HF_HUB_DISABLE_XET=1`.

Every request is logged (`requests`), every LFS PUT counted per object (`puts`), and `drop_puts` makes the
server read part of an upload's body and close the connection without answering (a dropped connection).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

TOKEN = "hf_test_token_for_the_local_hub"
LFS_SUFFIXES = (".parquet", ".safetensors", ".bin", ".png", ".jpg", ".pt", ".gguf", ".arrow", ".model")
REGULAR_LIMIT = 10 * 1024 * 1024  # the Hub stores bigger files in LFS whatever their type


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class Entry:
    """One file of a commit: its bytes, and the LFS object id when stored in LFS."""

    data: bytes
    lfs: str | None = None  # sha256 hex

    def tree_item(self, path: str) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "file", "path": path, "size": len(self.data)}
        if self.lfs:
            pointer = lfs_pointer(self.lfs, len(self.data))
            item |= {"oid": git_blob_id(pointer),
                     "lfs": {"oid": self.lfs, "size": len(self.data), "pointerSize": len(pointer)}}
        else:
            item["oid"] = git_blob_id(self.data)
        return item


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, tuple[str | None, str, dict[str, Entry]]] = field(default_factory=dict)  # sha -> parent, msg, files

    def files(self, rev: str) -> dict[str, Entry] | None:
        sha = self.branches.get(rev, rev)
        return self.commits[sha][2] if sha in self.commits else None

    def sha(self, rev: str) -> str | None:
        sha = self.branches.get(rev, rev)
        return sha if sha in self.commits else None


class HubState:
    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.puts: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []
        self.drop_puts: set[str] = set()  # LFS oids whose upload is cut off mid-body
        self.lock = threading.Lock()

    def writes(self) -> list[tuple[str, str]]:
        """Requests that change something (everything except reads and YAML validation)."""
        return [(m, p) for m, p in self.requests if m not in ("GET", "HEAD") and "validate-yaml" not in p]


TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
API = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(revision|preupload|commit|tree|paths-info|branch)"
                 r"(?:/([^/]+))?(/.*)?)?$")
RESOLVE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
LFS_BATCH = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState
    base_url: str

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    # -- plumbing --------------------------------------------------------------------------------
    def _send(self, status: int, body: Any = b"", headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        if not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        self._send(status, {"error": message}, {"X-Error-Code": code} if code else {"X-Error-Message": message})

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {TOKEN}"

    def _repo(self, kind: str | None, repo_id: str) -> Repo | None:
        repo = self.state.repos.get((TYPES.get(kind or "models", "model"), repo_id))
        if repo is None or (repo.private and not self._authorized()):
            self._error(404, "Repository not found", "RepoNotFound")
            return None
        return repo

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        with self.state.lock:
            self.state.requests.append((method, url.path))
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            self._route(method, url.path, query)
        except ConnectionError:
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # -- routes ----------------------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict[str, str]) -> None:
        if path == "/api/whoami-v2":
            return self._send(200, {"name": "tester", "type": "user"}) if self._authorized() else \
                self._error(401, "Invalid credentials in Authorization header")
        if path == "/api/repos/create" and method == "POST":
            return self._create(json.loads(self._body()))
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml(json.loads(self._body()))
        if path.startswith("/lfs-upload/") and method == "PUT":
            return self._lfs_put(path.rsplit("/", 1)[1])
        if m := LFS_BATCH.match(path):
            return self._lfs_batch(m.group(1), m.group(2), json.loads(self._body()))
        if m := RESOLVE.match(path):
            return self._resolve(m.group(1), m.group(2), unquote(m.group(3)), unquote(m.group(4)), method)
        if m := API.match(path):
            kind, repo_id, action, rev, rest = m.groups()
            repo = self._repo(kind, repo_id)
            if repo is None:
                return None
            rev = unquote(rev) if rev else "main"
            if action in (None, "revision"):
                return self._info(repo, rev)
            if action == "preupload":
                return self._preupload(repo, rev, json.loads(self._body()))
            if action == "commit":
                return self._commit(repo, rev, self._body())
            if action == "tree":
                return self._tree(repo, rev, unquote(rest or "").strip("/"), query.get("recursive") in ("1", "true", "True"))
            if action == "paths-info":
                return self._paths_info(repo, rev, self._body())
            if action == "branch":
                return self._branch(repo, rev, json.loads(self._body() or b"{}"))
        return self._error(404, f"no route for {method} {path}")

    def _create(self, payload: dict[str, Any]) -> None:
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        kind = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or 'tester'}/{payload['name']}"
        prefix = "" if kind == "model" else f"{kind}s/"
        with self.state.lock:
            url = f"{self.base_url}/{prefix}{repo_id}"
            if (kind, repo_id) in self.state.repos:  # the Hub's 409 carries the repo URL, which the client returns
                return self._send(409, {"error": "You already created this repo", "url": url})
            repo = Repo(kind, repo_id, payload.get("visibility") == "private" or bool(payload.get("private")))
            sha = hashlib.sha1(f"init {kind} {repo_id}".encode()).hexdigest()
            gitattributes = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()
            repo.commits[sha] = (None, "initial commit", {".gitattributes": Entry(gitattributes)})
            repo.branches["main"] = sha
            self.state.repos[(kind, repo_id)] = repo
        return self._send(200, {"url": url, "name": repo_id})

    def _validate_yaml(self, payload: dict[str, Any]) -> None:
        content = payload.get("content", "")
        errors = []
        if content.startswith("---"):
            block = content.split("---", 2)[1] if content.count("---") >= 2 else ""
            try:
                meta = yaml.safe_load(block)
                if meta is not None and not isinstance(meta, dict):
                    errors.append({"message": "metadata must be a mapping"})
            except yaml.YAMLError as exc:
                errors.append({"message": f"invalid YAML: {exc}"})
        if errors:
            return self._send(400, {"errors": errors, "warnings": [], "error": errors[0]["message"]})
        return self._send(200, {"errors": [], "warnings": []})

    def _info(self, repo: Repo, rev: str) -> None:
        files = repo.files(rev)
        if files is None:
            return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        card = files.get("README.md")
        card_data = None
        if card and card.data.startswith(b"---"):
            card_data = yaml.safe_load(card.data.decode().split("---", 2)[1])
        return self._send(200, {
            "id": repo.id, "_id": repo.id, "author": repo.id.split("/")[0], "sha": repo.sha(rev), "private": repo.private,
            "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [], "cardData": card_data,
            "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "siblings": [{"rfilename": p, "size": len(e.data)} for p, e in sorted(files.items())],
        })

    def _preupload(self, repo: Repo, rev: str, payload: dict[str, Any]) -> None:
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        existing = repo.files(rev) or {}
        out = []
        for f in payload["files"]:
            sample = base64.b64decode(f["sample"])
            lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] > REGULAR_LIMIT or b"\0" in sample
            old = existing.get(f["path"])
            oid = None if old is None else (old.lfs if old.lfs else git_blob_id(old.data))
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return self._send(200, {"files": out, "commitOid": repo.sha(rev)})

    def _lfs_batch(self, kind: str | None, repo_id: str, payload: dict[str, Any]) -> None:
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        if self._repo(kind, repo_id) is None:
            return None
        objects = []
        for obj in payload["objects"]:
            item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.state.lfs:
                item["actions"] = {"upload": {"href": f"{self.base_url}/lfs-upload/{obj['oid']}", "header": {}}}
            objects.append(item)
        return self._send(200, {"transfer": "basic", "objects": objects})

    def _lfs_put(self, oid: str) -> None:
        with self.state.lock:
            self.state.puts[oid] += 1
            drop = oid in self.state.drop_puts
        size = int(self.headers.get("Content-Length") or 0)
        if drop:  # read part of the body, then hang up without a reply
            self.rfile.read(min(size, 1024))
            self.close_connection = True
            raise ConnectionError("dropped by the test hub")
        data = self.rfile.read(size)
        if hashlib.sha256(data).hexdigest() != oid:
            return self._error(400, "content does not match its sha256")
        with self.state.lock:
            self.state.lfs[oid] = data
        return self._send(200, b"")

    def _commit(self, repo: Repo, rev: str, body: bytes) -> None:
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(x["value"] for x in lines if x["key"] == "header")
        with self.state.lock:
            parent = repo.sha(rev)
            if parent is None:
                return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            if header.get("parentCommit") and header["parentCommit"] != parent:
                return self._error(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.commits[parent][2])
            for item in lines:
                value = item["value"]
                if item["key"] == "file":
                    files[value["path"]] = Entry(base64.b64decode(value["content"]))
                elif item["key"] == "lfsFile":
                    if value["oid"] not in self.state.lfs:
                        return self._error(422, f"LFS object {value['oid']} was never uploaded")
                    files[value["path"]] = Entry(self.state.lfs[value["oid"]], lfs=value["oid"])
                elif item["key"] == "deletedFile":
                    files.pop(value["path"], None)
                elif item["key"] == "deletedFolder":
                    files = {p: e for p, e in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            sha = hashlib.sha1(f"{parent}{header['summary']}{sorted(files)}{time.time_ns()}".encode()).hexdigest()
            repo.commits[sha] = (parent, header["summary"], files)
            repo.branches[rev] = sha
        prefix = "" if repo.type == "model" else f"{repo.type}s/"
        return self._send(200, {"success": True, "commitOid": sha, "pullRequestUrl": None,
                                "commitUrl": f"{self.base_url}/{prefix}{repo.id}/commit/{sha}"})

    def _branch(self, repo: Repo, branch: str, payload: dict[str, Any]) -> None:
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        with self.state.lock:
            if branch in repo.branches:
                return self._error(409, f"Reference already exists: {branch}")
            start = repo.sha(payload.get("startingPoint") or "main")
            repo.branches[branch] = start
        return self._send(200, {})

    def _entries(self, repo: Repo, rev: str, prefix: str, recursive: bool) -> list[dict[str, Any]] | None:
        files = repo.files(rev)
        if files is None:
            return None
        out: dict[str, dict[str, Any]] = {}
        base = f"{prefix}/" if prefix else ""
        for path, entry in sorted(files.items()):
            if not path.startswith(base):
                continue
            rest = path[len(base):].split("/")
            if len(rest) == 1 or recursive:
                out[path] = entry.tree_item(path)
            for depth in range(1, len(rest) if recursive else min(2, len(rest))):
                folder = base + "/".join(rest[:depth])
                out.setdefault(folder, {"type": "directory", "path": folder,
                                        "oid": hashlib.sha1(folder.encode()).hexdigest()})
        return sorted(out.values(), key=lambda x: x["path"])

    def _tree(self, repo: Repo, rev: str, prefix: str, recursive: bool) -> None:
        entries = self._entries(repo, rev, prefix, recursive)
        if entries is None:
            return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        if prefix and not entries:
            return self._error(404, f"{prefix} does not exist", "EntryNotFound")
        return self._send(200, entries)

    def _paths_info(self, repo: Repo, rev: str, body: bytes) -> None:
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            paths = json.loads(body).get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        entries = {e["path"]: e for e in self._entries(repo, rev, "", True) or []}
        return self._send(200, [entries[p] for p in paths if p in entries])

    def _resolve(self, kind: str | None, repo_id: str, rev: str, path: str, method: str) -> None:
        repo = self._repo(kind, repo_id)
        if repo is None:
            return None
        files = repo.files(rev)
        if files is None:
            return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        entry = files.get(path)
        if entry is None:
            return self._error(404, "Entry not found", "EntryNotFound")
        item = entry.tree_item(path)
        headers = {"X-Repo-Commit": repo.sha(rev) or "", "ETag": f'"{item["oid"]}"', "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers |= {"X-Linked-Etag": f'"{entry.lfs}"', "X-Linked-Size": str(len(entry.data))}
        data, status = entry.data, 200
        if m := re.match(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "")):
            start = int(m.group(1) or 0)
            end = int(m.group(2)) if m.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{min(end, len(data) - 1)}/{len(data)}"
            data, status = data[start:end + 1], 206
        return self._send(status, data, headers)


class LocalHub:
    """A running hub on 127.0.0.1: `url`, `state`; `close()` stops it."""

    def __init__(self) -> None:
        self.state = HubState()
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        handler.base_url = self.url
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
