"""The house's layout: packages in layers, no import circles among kerastrack's modules
(function-local imports count), code as the declared formatter writes it, no module over 400
formatted lines, and only ``tracking/`` imports mlflow."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
MODULES = {
    ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): p
    for p in sorted(SRC.rglob("*.py"))
    if "egg-info" not in str(p)
}


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
                return [*stack[stack.index(nxt) :], nxt] if nxt in stack else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*stack, nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


ROOT = SRC.parent

# The layers, top first, as kerastrack's packages (a top-level module counts as a package of
# its own): a module imports only from its own package and the layers below it. The package's
# __init__ ("kerastrack") is the public API, at the top with the command line and the
# Python API behind it; ``conf`` is the config groups' YAML, importing nothing.
LAYERS = [
    ["hydra_plugins"],
    ["kerastrack", "cli", "api"],
    ["pipeline", "sweeps"],
    ["report", "ui", "upload", "resume", "evaluate", "clean"],
    ["config"],
    ["callbacks", "data", "models", "optimizers"],
    ["losses", "figures"],
    ["tracking"],
    ["utils"],
    ["errors", "conf"],
]


def package(module):
    """The package a module belongs to: ``kerastrack.report.build`` -> ``report``."""
    parts = module.split(".")
    if parts[0] == "hydra_plugins":
        return "hydra_plugins"
    return parts[1] if len(parts) > 1 else "kerastrack"


def test_every_package_has_a_layer():
    assert sorted({package(name) for name in MODULES}) == sorted(name for layer in LAYERS for name in layer)


def test_no_module_imports_from_a_layer_above_its_own():
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    upward = [
        f"{a} -> {b}" for a, targets in _graph().items() for b in targets if layer[package(b)] < layer[package(a)]
    ]
    assert not upward


def test_at_most_twelve_modules_sit_directly_in_the_package():
    top = sorted(p.name for p in (SRC / "kerastrack").glob("*.py"))
    assert len(top) <= 12, top


def test_the_readme_layout_names_every_package_and_top_level_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.index("```\n", layout.index("```text") + 1)]
    named = {line.split("#")[0].strip() for line in layout.splitlines()}
    words = {word for entry in named for word in entry.split()}
    packages = {p.name + "/" for p in (SRC / "kerastrack").iterdir() if (p / "__init__.py").is_file()}
    top = {p.name for p in (SRC / "kerastrack").glob("*.py") if p.name != "__init__.py"}
    assert packages | top <= words, sorted((packages | top) - words)


def test_no_code_imports_a_module_by_its_old_path():
    # The old paths stay importable for runs recorded before the move (kerastrack.utils.moved);
    # new code names the modules where they are.
    from kerastrack.utils.moved import MOVED

    files = [p for d in ("src", "tests", "benchmarks", "experiments") for p in (ROOT / d).rglob("*.py")]
    old = [
        f"{p.relative_to(ROOT)}: {name}" for p in [*files, ROOT / "train.py"] for name in _imports(p) if name in MOVED
    ]
    assert not old


def test_the_checker_finds_a_circle_hidden_in_a_function():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_src_imports_itself_in_a_circle():
    assert _cycle(_graph()) is None


def test_the_code_is_as_the_declared_formatter_writes_it():
    # ruff, configured in pyproject.toml; .ci/run runs it too, with `ruff check`.
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed: pip install -r requirements.txt")
    done = subprocess.run([ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_400_formatted_lines(name):
    # Formatted lines: the test above holds every file to the formatter's output.
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
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (getattr(node.func, "id", None) == "__import__" or getattr(node.func, "attr", None) == "import_module")
        ):
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
    outside = [
        f"{path.relative_to(SRC)}:{line}: {statement}"
        for name, path in MODULES.items()
        if not name.startswith("kerastrack.tracking")
        for line, statement in mlflow_imports(path)
    ]
    assert not outside, "only src/kerastrack/tracking/ may import mlflow; found:\n" + "\n".join(outside)
