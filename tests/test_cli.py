"""The `astrodata` command line as a whole: `--help` reads as the pipeline."""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from astrodata.cli import PIPELINE, app


def test_help_lists_commands_in_pipeline_order():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    listed = re.findall(r"^[│|]\s+([a-z][a-z-]+)\s{2,}\S", result.output, flags=re.M)
    assert listed[:len(PIPELINE)] == ["run", "harvest", "build-corpus", "build-qa", "train", "merge", "eval",
                                      "eval-general", "export-lm-eval", "report", "publish", "status", "sql"]
    group = typer.main.get_command(app)
    assert sorted(listed) == sorted(group.commands)  # every command listed once; new ones follow the pipeline
