"""Output datasets in Hugging Face layout: `OUT/data/*.parquet` shards plus `stats.json`.

Shards are written to a temporary name and renamed, so a crash never leaves a half shard; the
ids already present in finished shards are the resume point (the shards, not the catalog, are
the source of truth for what is in the output, so a kill between writing a shard and updating
the catalog cannot duplicate or lose a row).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from astrodata.core.files import atomic_path, atomic_write_json

CORPUS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("source_id", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("n_tokens", pa.int64()),
        ("license", pa.string()),
        ("url", pa.string()),
        ("date", pa.string()),
    ]
)


class ShardWriter:
    """Buffer rows and write them as parquet shards of at most `rows_per_shard` rows."""

    def __init__(self, out_dir: str | os.PathLike, schema: pa.Schema | None = None,
                 rows_per_shard: int = 10_000, prefix: str = "part"):
        self.data_dir = Path(out_dir) / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.rows_per_shard = rows_per_shard
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.buffer: list[dict[str, Any]] = []
        self.n_shards = 0
        self.n_rows = 0

    def add(self, row: dict[str, Any]) -> list[str]:
        """Add a row; returns the ids written if this add flushed a shard."""
        self.buffer.append(row)
        return self.flush() if len(self.buffer) >= self.rows_per_shard else []

    def flush(self, allow_empty: bool = False) -> list[str]:
        if not self.buffer and not (allow_empty and self.schema is not None):
            return []
        table = pa.Table.from_pylist(self.buffer, schema=self.schema)
        name = f"{self.prefix}-{self.n_shards:05d}.parquet"
        with atomic_path(self.data_dir / name) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        ids = [str(r.get("id")) for r in self.buffer]
        self.n_shards += 1
        self.n_rows += len(self.buffer)
        self.buffer = []
        return ids

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        # A dataset with no rows still gets one (empty) shard, so it loads with its columns.
        self.flush(allow_empty=self.n_shards == 0)


def shard_files(out_dir: str | os.PathLike) -> list[Path]:
    return sorted((Path(out_dir) / "data").glob("*.parquet"))


def existing_ids(out_dir: str | os.PathLike, column: str = "id") -> set[str]:
    """Ids already written to finished shards (temporary files are ignored)."""
    ids: set[str] = set()
    for f in shard_files(out_dir):
        ids.update(pq.read_table(f, columns=[column]).column(column).to_pylist())
    return ids


def read_rows(out_dir: str | os.PathLike, columns: list[str] | None = None) -> Iterable[dict[str, Any]]:
    """Stream rows from every shard, one record batch at a time."""
    for f in shard_files(out_dir):
        for batch in pq.ParquetFile(f).iter_batches(columns=columns, batch_size=1024):
            yield from batch.to_pylist()


def write_stats(out_dir: str | os.PathLike, stats: dict[str, Any]) -> Path:
    return atomic_write_json(Path(out_dir) / "stats.json", stats, indent=2, sort_keys=True, default=str)
