"""Orchestration above execution: the runtime control of a node never climbs back into a plan.

A drain by re-render is a whole apply (gather, plan, apply) and lives in orchestrate/rerender.py;
execute/admin.py only runs a front end's runtime commands and reads what it runs. Read from the
source with ast (imports under `if TYPE_CHECKING:` are types only and do not count), and
followed through every clusterctl module it imports, so a detour through a third module fails
too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What a front end's runtime control must not import: the plan, the renderer, apply, and
# everything above execution.
ABOVE = (
    "clusterctl.plan",
    "clusterctl.render",
    "clusterctl.execute.apply",
    "clusterctl.orchestrate",
)


def _source(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.exists():
            return path
    return None


def _type_only(node: ast.If) -> bool:
    test = node.test
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
    return name == "TYPE_CHECKING"


def _imports(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _type_only(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            # `from clusterctl.execute import admin` imports the module admin.
            out |= {f"{node.module}.{a.name}" for a in node.names}
        todo.extend(ast.iter_child_nodes(node))
    return {m for m in out if m.startswith("clusterctl") and _source(m) is not None}


def imported_by(start: str) -> dict[str, str]:
    """Every clusterctl module `start` imports, directly or not, each with who imports it."""
    seen: dict[str, str] = {start: ""}
    todo = [start]
    while todo:
        module = todo.pop()
        path = _source(module)
        assert path is not None, module
        for name in sorted(_imports(ast.parse(path.read_text(), str(path)))):
            # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
            parts = name.split(".")
            for n in range(1, len(parts) + 1):
                parent = ".".join(parts[:n])
                if parent not in seen and _source(parent) is not None:
                    seen[parent] = module
                    todo.append(parent)
    return seen


def _chain(seen: dict[str, str], module: str) -> str:
    chain = [module]
    while seen[chain[-1]]:
        chain.append(seen[chain[-1]])
    return " <- ".join(chain)


def _climbs(start: str) -> list[str]:
    seen = imported_by(start)
    return [
        _chain(seen, m) for m in sorted(seen) if any(m == a or m.startswith(a + ".") for a in ABOVE)
    ]


def test_runtime_control_imports_no_plan_render_or_apply() -> None:
    assert _climbs("clusterctl.execute.admin") == []
    assert _climbs("clusterctl.execute.admin_views") == []


def test_the_rerender_path_is_found_where_it_lives() -> None:
    # The check sees an import when there is one: the re-render path does climb into all three.
    climbs = "\n".join(_climbs("clusterctl.orchestrate.rerender"))
    for module in ("clusterctl.plan", "clusterctl.render", "clusterctl.execute.apply"):
        assert f"\n{module} <- " in "\n" + climbs, climbs
