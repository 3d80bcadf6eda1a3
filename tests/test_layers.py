"""The package's shape, checked: layers imported only downward, no import cycle, no file
over 600 lines and no function over 80 (declarative tables aside)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "jupyter_scriptrun"

# Lower layers never import higher ones. Within a layer, modules may import each other
# (the cycle check still applies).
LAYERS: list[tuple[str, ...]] = [
    # 0: vocabulary shared by everything
    (
        "_version",
        "defaults",
        "exceptions",
        "status",
        "models",
        "queues",
        "schemas",
        "params",
        "display",
        "script",
        "timing",
    ),
    ("config",),
    # what a script is and how it talks
    ("contract",),
    # processes and the database, each knowing nothing of the other
    ("execution.proc", "execution.capture", "execution.subreaper", "execution.runtag"),
    ("execution.child", "execution.warm", "execution.forked", "execution.orphans"),
    (
        "execution.live",
        "execution.progress",
        "execution.lease",
        "execution.runners",
        "execution.standby",
        "execution.notify",
        "execution.outputs",
        "execution.notebook",
        "store",
    ),
    # one attempt: store + runner + contract
    ("execution.executor",),
    # Celery: the broker, the task, the worker, the embedded default
    ("fleet",),
    # what front ends call
    ("service",),
    # watching the fleet (through the service)
    ("observe",),
    # front ends, the package's facade and the benchmark
    ("cli", "jupyter", "bench", "worker"),
    ("__init__", "__main__"),
]

EXEMPT_FUNCTIONS = {
    # Declarative tables: a document and a migration, read top to bottom.
    ("jupyter/openapi.py", "document"),
    ("store/migrations/versions/0001_initial_tables.py", "upgrade"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = index, len(name)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports, deferred imports included, type-only
    imports (under ``if TYPE_CHECKING``) excluded."""
    tree = ast.parse(path.read_text())
    type_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise AssertionError(f"{path}: relative import; use absolute imports")
            if node.module == "jupyter_scriptrun":
                found.update(alias.name for alias in node.names if _is_module(alias.name))
            elif node.module.startswith("jupyter_scriptrun."):
                base = node.module.removeprefix("jupyter_scriptrun.")
                subs = [f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}")]
                found.update(subs or [base])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("jupyter_scriptrun."):
                    found.add(alias.name.removeprefix("jupyter_scriptrun."))
    return found


def _is_module(dotted: str) -> bool:
    path = PACKAGE.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    return {
        module_name(p): imports(p) - {module_name(p)}
        for p in PACKAGE.rglob("*.py")
        if "migrations" not in p.parts
    }


def test_layers_are_imported_only_downward():
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in sorted(graph().items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_front_ends_reach_the_back_end_only_through_the_client():
    back_end = ("store", "execution", "fleet", "contract")
    reaching = [
        f"{module} imports {target}"
        for module, targets in sorted(graph().items())
        if module.split(".")[0] in ("cli", "jupyter")
        for target in sorted(targets)
        if target.split(".")[0] in back_end
    ]
    assert not reaching, "\n".join(reaching)


FRONT_ENDS = ("cli", "jupyter")


def front_end_files() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if module_name(p).split(".")[0] in FRONT_ENDS]


def test_front_ends_are_typed_against_the_client_and_use_only_its_methods():
    """mypy checks every call a front end makes (no client typed ``Any``), and no front end
    reaches past the client into its store or Celery's control channel."""
    found = []
    for path in front_end_files():
        text = path.read_text()
        relative = path.relative_to(PACKAGE)
        for pattern in (
            r"\bclient: Any\b",
            r"_client\(\) -> Any",
            r"client: \"Any\"",
            r"def client\(self\) -> Any",
        ):
            if re.search(pattern, text):
                found.append(f"{relative}: a client typed Any ({pattern})")
        for reach in (r"client\.store\b", r"\.app\.control\b"):
            if re.search(reach, text):
                found.append(f"{relative}: reaches {reach.replace(chr(92), '')}")
    assert not found, "\n".join(found)


def test_only_the_control_module_speaks_on_celerys_control_channel():
    """Command names and calls on ``app.control`` live in fleet/control.py, both ends."""
    speaking = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "control.py"
        and re.search(r"\.control\.(inspect|broadcast|revoke)\(", p.read_text())
    ]
    assert not speaking, speaking


ROOT_MODULES_AT_MOST = 15


def test_the_root_holds_the_facade_and_the_vocabulary_only():
    """Below the root the folders are the layers; the root keeps the public names (the
    facade, ``worker`` for ``celery -A``, ``script`` for scripts) and the vocabulary."""
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= ROOT_MODULES_AT_MOST, root
    assert all(
        layer_of(module_name(PACKAGE / name)) <= 1
        for name in root
        if name not in ("__init__.py", "__main__.py", "worker.py")
    ), root


def test_no_module_shadows_a_name_of_the_facade():
    """Importing ``jupyter_scriptrun.x`` sets the package's attribute ``x``: a module or
    folder named like a facade function (``sr.schedules``) would replace it."""
    import jupyter_scriptrun

    modules = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if p.is_dir()
    }
    assert not modules & set(jupyter_scriptrun.__all__), modules & set(jupyter_scriptrun.__all__)


def test_there_is_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for imported in sorted(edges[node]):
            target = _owner(imported, edges)
            if target is None:
                continue
            if state.get(target) == 1:
                cycles.append(" → ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not cycles, "\n".join(cycles)


def test_run_and_schedule_handles_know_the_client_only_as_a_protocol():
    """``Execution`` and ``Schedule`` depend on what they use (RunBackend, ScheduleBackend:
    the store, control, a submit), not on ``Client``, not even for types: the client makes
    them, they do not reach back (rq's ``Job`` holds only its connection)."""
    for name in ("handle", "scheduling"):
        tree = ast.parse((PACKAGE / "service" / f"{name}.py").read_text())
        named = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert "jupyter_scriptrun.service.client" not in named, name


def _owner(name: str, edges: dict[str, set[str]]) -> str | None:
    """The graph's node for an imported name (a module, or the package holding it)."""
    while name and name not in edges:
        name = name.rpartition(".")[0]
    return name or None


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_file_over_600_lines_and_no_function_over_80(path: Path):
    lines = path.read_text().count("\n")
    assert lines <= 600, f"{path.name}: {lines} lines"
    relative = path.relative_to(PACKAGE).as_posix()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if (relative, node.name) not in EXEMPT_FUNCTIONS:
                assert length <= 80, f"{relative}: {node.name} is {length} lines"


def test_the_readme_layout_names_every_module():
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    missing = [
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if "migrations" not in p.parts
        and p.name not in ("__init__.py", "__main__.py")
        and p.parent.name != "bench"
        and p.name not in layout
    ]
    assert not missing, f"README's layout section does not name {missing}"
    for folder in ("contract/", "execution/", "store/", "fleet/", "jupyter/", "bench/"):
        assert folder in layout
