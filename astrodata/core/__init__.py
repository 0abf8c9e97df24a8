"""Shared plumbing used by every stage: workspace and catalog, config loading, arXiv ids, HTTP with
retries, atomic file writes, Parquet shards, text normalisation, the embedded model, MCQ files.

Nothing here imports a stage; every stage may import from here.
"""
