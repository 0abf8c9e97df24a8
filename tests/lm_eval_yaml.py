"""Read an lm-evaluation-harness task YAML the way lm-eval resolves it, for environments without lm-eval.

lm-eval (>= 0.4.8, `lm_eval/tasks/_yaml_loader.py`) loads task YAML with a loader where
`!function mod.fn` imports `mod.py` from the YAML's own folder first; `custom_dataset` is then called
with the task's metadata and dataset_kwargs and must return the splits. This mirrors that resolution
(by file location, not by import path) so a test can check an exported task loads from wherever it lies.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import yaml


def load_lm_eval_yaml(path: Path) -> dict[str, Any]:
    """The task config with every `!function mod.fn` replaced by the function from `<yaml dir>/mod.py`."""
    base = path.resolve().parent

    class Loader(yaml.SafeLoader):
        pass

    def function(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        module_name, _, fn = loader.construct_scalar(node).rpartition(".")
        file = base / f"{module_name.replace('.', '/')}.py"
        spec = importlib.util.spec_from_file_location(str(file.with_suffix("")), file)
        assert spec is not None and spec.loader is not None, f"{file} not found next to {path}"
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, fn)

    Loader.add_constructor("!function", function)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 - our own test loader
