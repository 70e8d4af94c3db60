"""Every setting is declared once: in its stage's params class, nowhere else with its default.

Why: when a default is written twice (a dataclass beside the Pydantic model, a function's keyword
default, a CLI option), changing it in one place silently leaves the other behind. The check reads
the code: for every leaf field of the params tree it looks, in the package code, for a dataclass
field, a class attribute, a function parameter or a CLI option of the same name (or the same name
without its unit suffix: ``timeout`` for ``timeout_s``) whose default is the same literal value.
"""

from __future__ import annotations

import ast
from pathlib import Path

from pydantic import BaseModel

from flows.config import Params
from tests.paths import ROOT

PACKAGES = ("flows", "ray_tasks", "models")
UNIT_SUFFIXES = ("_s", "_mb", "_bytes")


def params_defaults(model: type[BaseModel] = Params) -> dict[str, set]:
    """Leaf field name -> the default values it has somewhere in the tree (literals only)."""
    out: dict[str, set] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for k, v in params_defaults(annotation).items():
                out.setdefault(k, set()).update(v)
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, (int, float, str, bool)) and not isinstance(default, BaseModel):
            out.setdefault(name, set()).add(default)
    return out


def _names(name: str) -> set[str]:
    names = {name}
    for suffix in UNIT_SUFFIXES:
        if name.endswith(suffix):
            names.add(name[: -len(suffix)])
    return names


def _literal(node: ast.AST | None):
    if node is None:
        return None
    if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "Option":
        return _literal(node.args[0]) if node.args else None  # typer.Option(default, ...)
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None


def _is_params_class(node: ast.ClassDef) -> bool:
    """The declarations themselves: classes deriving from a params base."""
    return any(getattr(b, "id", getattr(b, "attr", "")) in {"StageParams", "TrainSection", "BaseModel"}
               or (getattr(b, "id", "").endswith("Params")) for b in node.bases)


def declarations(path: Path):
    """(name, default, line) of every defaulted class attribute and function parameter."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and not _is_params_class(node):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
                    yield item.target.id, _literal(item.value), item.lineno
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            for arg, default in zip(positional[len(positional) - len(args.defaults):], args.defaults):
                yield arg.arg, _literal(default), node.lineno
            for arg, default in zip(args.kwonlyargs, args.kw_defaults):
                if default is not None:
                    yield arg.arg, _literal(default), node.lineno


def second_declarations() -> list[str]:
    settings = params_defaults()
    by_name: dict[str, set] = {}
    for name, values in settings.items():
        for alias in _names(name):
            by_name.setdefault(alias, set()).update(values)
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for name, value, line in declarations(path):
                if value is None or name not in by_name:
                    continue
                if any(value == v and type(value) is type(v) for v in by_name[name]):
                    found.append(f"{path.relative_to(ROOT)}:{line}: {name} = {value!r}")
    return found


def test_no_setting_has_a_second_default_in_the_code():
    found = second_declarations()
    assert not found, "settings declared again outside their params class:\n" + "\n".join(found)


def test_the_check_finds_a_copy(tmp_path, monkeypatch):
    """A dataclass that repeats a dedup default is caught (the check can fail)."""
    pkg = tmp_path / "ray_tasks"
    pkg.mkdir()
    (pkg / "copy.py").write_text("from dataclasses import dataclass\n\n\n@dataclass\nclass C:\n    num_perm: int = 250\n"
                                 "\n\ndef f(x, timeout=3.0):\n    return x\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    found = second_declarations()
    assert any("num_perm = 250" in f for f in found) and any("timeout = 3.0" in f for f in found)
