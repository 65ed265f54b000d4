"""The house's layout: no import circles among kerastrack's modules (function-local imports
count), no module over 400 lines, and only ``tracking/`` imports mlflow."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
MODULES = {".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): p
           for p in sorted(SRC.rglob("*.py")) if "egg-info" not in str(p)}


def _imports(path):
    """Every module a file imports, at any depth of its code: ``from package import module``
    is that module, ``from module import name`` the module."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            yield from (m for m in submodules if m in MODULES)
            if not all(m in MODULES for m in submodules):
                yield node.module


def _graph():
    """kerastrack module -> the kerastrack modules it imports."""
    return {name: {t for t in _imports(path) if t in MODULES and t != name} for name, path in MODULES.items()}


def _cycle(graph):
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt):], nxt] if nxt in stack else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*stack, nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


# The layers of the README's layout, top first: a module imports only from its own layer and
# the layers below it.
LAYERS = [
    ["hydra_plugins.kerastrack_optuna_sweeper", "hydra_plugins.kerastrack_optuna_sweeper.optuna_sweeper",
     "hydra_plugins.kerastrack_joblib_launcher", "hydra_plugins.kerastrack_joblib_launcher.resilient_launcher"],
    ["kerastrack.pipeline"],
    ["kerastrack.sweep", "kerastrack.sweep_dir"],
    ["kerastrack.report", "kerastrack.best_over", "kerastrack.grouping", "kerastrack.report_page", "kerastrack.ui", "kerastrack.upload"],
    ["kerastrack.resume", "kerastrack.stopped"],
    ["kerastrack.config", "kerastrack.config_links", "kerastrack.overrides", "kerastrack"],  # the package's __init__ registers config's resolvers
    ["kerastrack.data", "kerastrack.datafiles", "kerastrack.feed", "kerastrack.lab"],
    ["kerastrack.models", "kerastrack.heads", "kerastrack.losses", "kerastrack.schedules", "kerastrack.surfaces"],
    ["kerastrack.callbacks", "kerastrack.probes", "kerastrack.search"],
    ["kerastrack.plots", "kerastrack.trajectories"],
    [name for name in MODULES if name.startswith("kerastrack.tracking")],
    ["kerastrack.secrets", "kerastrack.signals", "kerastrack.watchdog"],
    ["kerastrack.hydra_utils", "kerastrack.files", "kerastrack.background", "kerastrack.errors", "kerastrack.startup", "kerastrack.stats"],
]


def test_every_module_has_a_layer():
    assert sorted(name for layer in LAYERS for name in layer) == sorted(MODULES)


def test_no_module_imports_from_a_layer_above_its_own():
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    upward = [f"{a} -> {b}" for a, targets in _graph().items() for b in targets if layer[b] < layer[a]]
    assert not upward


def test_the_checker_finds_a_circle_hidden_in_a_function():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_src_imports_itself_in_a_circle():
    assert _cycle(_graph()) is None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_400_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= 400, f"{MODULES[name]} has {lines} lines"


def mlflow_imports(path):
    """``(line, statement)`` of every import of mlflow in the module at ``path``, at any depth
    (a function's own imports too), including ``importlib.import_module("mlflow...")`` and
    ``__import__("mlflow...")`` with a literal name."""
    def is_mlflow(name):
        return name == "mlflow" or name.startswith("mlflow.")

    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []  # a relative import stays in its package
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "id", None) == "__import__" or getattr(node.func, "attr", None) == "import_module")):
            names = [node.args[0].value]
        else:
            continue
        if any(is_mlflow(name) for name in names):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_only_the_tracking_package_imports_mlflow():
    # Every use of MLflow goes through kerastrack.tracking, so that its API changes in one
    # place. Every module of src/ is read, not just the ones a test imports.
    assert {name.split(".")[0] for name in MODULES} >= {"kerastrack", "hydra_plugins"}
    outside = [f"{path.relative_to(SRC)}:{line}: {statement}" for name, path in MODULES.items()
               if not name.startswith("kerastrack.tracking") for line, statement in mlflow_imports(path)]
    assert not outside, "only src/kerastrack/tracking/ may import mlflow; found:\n" + "\n".join(outside)
