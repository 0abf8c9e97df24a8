"""`astrodata run`: the whole pipeline from one recipe (recipe.py), its stages (stages.py), the
plan-and-run logic with the catalog's `stage_runs` record (pipeline.py) and the run summary (report.py)."""
