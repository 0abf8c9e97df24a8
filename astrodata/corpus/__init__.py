"""Corpus stage: quality filters, near-duplicate removal, benchmark decontamination, token counts,
statistics, and the build that composes them (`astrodata.corpus.build.build_corpus`)."""
