"""Local documents (textbooks, notes): .txt, .md, .tex and .pdf files read into chapter documents.

Comes after `latex/` in the pipeline because `.tex` books are converted with it."""
