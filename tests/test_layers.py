"""The package's layers point down, as import-linter's layers contract in pyproject.toml says,
and the library does not hide imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: import-linter brings tomli
    import tomli as tomllib

from importlinter.cli import lint_imports

import deltalearn

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(deltalearn.__file__).parent
APPLICATIONS = ("cli",)  # may import lazily, e.g. for a fast --help
# optional or heavy: training runs without tensorboard; trackers (with supervision) costs the
# command line 1.6 s of start-up and only `predict --track` needs it
LAZY_IMPORTS = {"torch.utils.tensorboard", "trackers", "supervision"}


def layer_contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract, = [c for c in config["contracts"] if c["type"] == "layers"]
    return contract


def test_the_layers_contract_is_kept(capsys) -> None:
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    assert code == 0, capsys.readouterr().out


def test_every_module_of_the_package_is_in_a_layer() -> None:
    layered = {name.strip() for layer in layer_contract()["layers"] for name in layer.split("|")}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    modules |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert modules == layered, f"not in a layer: {sorted(modules - layered)}; not a module: {sorted(layered - modules)}"


def function_local_imports(path: Path) -> list[str]:
    """'module (line)' of every import statement inside a function or method of ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    found += [f"{alias.name} ({inner.lineno})" for alias in inner.names]
                elif isinstance(inner, ast.ImportFrom):
                    found.append(f"{'.' * inner.level}{inner.module or ''} ({inner.lineno})")
    return found


def test_library_modules_import_at_the_top() -> None:
    hidden = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] in APPLICATIONS:
            continue
        imports = [i for i in function_local_imports(path) if i.split(" ")[0] not in LAZY_IMPORTS]
        if imports:
            hidden[str(path.relative_to(PACKAGE))] = imports
    assert not hidden, f"imports inside functions: {hidden}"


def test_the_check_finds_a_hidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from .x import y\n    import json\n    return y, json, os\n")
    assert function_local_imports(module) == [".x (4)", "json (5)"]
