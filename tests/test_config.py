"""The one config loader (issue 9), tried from the user's side: bad `key=value` overrides and bad
recipe values fail at load time with one line naming the file and the key (review-1)."""

from __future__ import annotations

import pytest

from astrodata.core.config import load_config, parse_overrides
from astrodata.corpus.recipe import load_recipe
from training.config import CPTConfig

CPT = "training/configs/smollm2-cpu-cpt.yaml"


@pytest.mark.parametrize("items, message", [
    (["max_steps=[1,"], "override 'max_steps=[1,': value is not valid YAML"),
    (["seq_len=!!python/object:os.system ls"], "override 'seq_len=!!python/object:os.system ls': value is not valid"),
    (["max_steps=1", "max_steps.x=2"], "override 'max_steps.x=2': max_steps is set to a value by another override"),
    (["a..b=1"], "override 'a..b=1' is not of the form key=value"),
    (["max_steps"], "override 'max_steps' is not of the form key=value"),
])
def test_bad_override_items_are_one_line_value_errors_naming_the_item(items, message):
    with pytest.raises(ValueError) as err:
        parse_overrides(items)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_bad_key_set_by_an_override_is_named_as_one():
    with pytest.raises(ValueError) as err:
        load_config(CPTConfig, CPT, ["max_stepz=3", "learning_rate=-1"])
    line = str(err.value)
    assert line.startswith(CPT + ": ") and "\n" not in line
    assert "max_stepz (override): Extra inputs" in line and "learning_rate (override): Input should be greater" in line


def test_a_bad_key_in_the_file_is_not_called_an_override(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text((open(CPT).read()) + "\nmax_stepz: 3\n")
    with pytest.raises(ValueError) as err:
        load_config(CPTConfig, cfg, ["max_steps=2"])
    assert f"{cfg}: max_stepz: Extra inputs" in str(err.value)


@pytest.mark.parametrize("yaml_text, key", [
    ("dedup:\n  threshold: 2.5\n", "dedup.threshold"),
    ("dedup:\n  bands: 0\n", "dedup.bands"),
    ("decontam:\n  ngram: 0\n", "decontam.ngram"),
    ("losses:\n  max_per_1k_words: -5\n", "losses.max_per_1k_words"),
])
def test_out_of_range_recipe_values_fail_at_load_naming_file_and_key(tmp_path, yaml_text, key):
    """Before: accepted, and the build failed after extracting every document with a line that
    named neither the file nor the key (`MinHashParams.threshold must be in (0, 1]`)."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml_text)
    with pytest.raises(ValueError) as err:
        load_recipe(recipe)
    assert str(err.value).startswith(f"{recipe}: {key}: ")


def test_a_category_pattern_that_is_not_a_regex_fails_at_load(tmp_path):
    """Before: accepted, and a build with Wikipedia failed at its first page with re.error."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text('wikipedia:\n  category_patterns: ["(unclosed"]\n')
    with pytest.raises(ValueError) as err:
        load_recipe(recipe)
    assert str(err.value).startswith(f"{recipe}: wikipedia.category_patterns: ") and "(unclosed" in str(err.value)
