"""Synthetic QA for SFT: tasks, backends, the request engine, batch files, grading, Infinity-Instruct, the mix.

The entry point is `astrodata.qa.build.build_qa` (the `astrodata build-qa` command).
"""
