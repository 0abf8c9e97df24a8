"""Corpus stage: quality filters, near-duplicate removal, benchmark decontamination, token counts,
statistics, the blocks of one shape they run as (`astrodata.corpus.steps`), and the build that
composes them (`astrodata.corpus.build.build_corpus`)."""
