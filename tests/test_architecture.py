"""The package layout is the pipeline: no module imports a later stage, and no import cycles.

Checked statically (every `import` in every module, including those inside functions), so a lazy
import cannot hide a backward edge."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Pipeline order inside `astrodata/`: plumbing first, then each stage; the CLI shell last.
STAGES = ["core", "sources", "latex", "textbooks", "corpus", "qa", "run", "cli"]
# The shells that dispatch to training/benchmarks/cards (lazily): the CLI and `astrodata run`.
SHELLS = ("astrodata.cli", "astrodata.run")
# The four top-level packages: data flows forward from astrodata to the others.
PACKAGES = ["astrodata", "benchmarks", "training", "cards"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Dotted names this module imports from our packages (`from a.b import c` gives `a.b.c` and `a.b`)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in out if name.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _stage(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "astrodata" or len(parts) < 2:
        return None
    return STAGES.index(parts[1]) if parts[1] in STAGES else None


def test_every_astrodata_module_belongs_to_a_stage():
    loose = [m for m in _graph() if m.startswith("astrodata.") and _stage(m) is None]
    assert loose == [], f"modules outside the stage folders: {loose}"


def test_no_module_imports_a_later_stage():
    backward = [(m, dep) for m, deps in _graph().items() for dep in deps
                if _stage(m) is not None and _stage(dep) is not None and _stage(dep) > _stage(m)]
    assert backward == [], f"imports of a later stage: {backward}"


def test_astrodata_imports_no_downstream_package_outside_the_shells():
    # benchmarks, training and cards build on astrodata; only the CLI and `astrodata run` dispatch to them.
    bad = [(m, dep) for m, deps in _graph().items() for dep in deps
           if m.startswith("astrodata.") and not m.startswith(SHELLS) and not dep.startswith("astrodata")]
    assert bad == [], bad


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # A package's __init__ importing its own submodule is not a cycle between modules.
    real = [c for c in cycles if not all(c[0].startswith(x) or x.startswith(c[0]) for x in c)]
    assert real == [], f"import cycles: {real}"
