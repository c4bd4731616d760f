"""The dependency rules of docs/architecture.md, checked on the source: no import cycle between governance
modules (module-level or inside functions), imports only downwards through the layers, and no function-level
import except the few listed here with their reason.

Layers, top to bottom: entry points (portal, API, Celery tasks, management commands) -> job layer (runner,
evaluator, jobs, webhook delivery) -> actions (and the helpers they use: audit, permissions, bundles, ...) ->
models (and errors, signals, the request context) -> the optimizer library. Actions announce work with signals
on commit; the job layer receives them. Parsed with ast, not imported, so a violation is found even on a code
path no test runs.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ENTRY, JOBS, ACTIONS, MODELS, LIBRARY = 4, 3, 2, 1, 0
LAYER_NAMES = {ENTRY: "entry points", JOBS: "job layer", ACTIONS: "actions", MODELS: "models", LIBRARY: "optimizer"}

# Exact modules first, then package prefixes; every governance module must match one (a new module is placed
# here on purpose, not by accident).
LAYERS: dict[str, int] = {
    "governance": LIBRARY, "governance.settings": LIBRARY, "governance.celery": LIBRARY,  # configuration only
    "governance.startup": LIBRARY,
    "governance.views": ENTRY, "governance.portal_accounts": ENTRY, "governance.portal_urls": ENTRY,
    "governance.urls": ENTRY, "governance.wsgi": ENTRY, "governance.api": ENTRY, "governance.tasks": ENTRY,
    "governance.webhook_tasks": ENTRY, "governance.management": ENTRY, "governance.admin": ENTRY,
    "governance.forms": ENTRY, "governance.templatetags": ENTRY, "governance.apps": ENTRY,
    "governance.middleware": ENTRY,
    "governance.portal_pages": ENTRY,  # shared portal plumbing: form pages, the friendly 405
    "governance.audit_text": ENTRY,  # audit events in words and links, for the pages that list them
    "governance.portal_dspy": ENTRY,  # DSPy file import and export pages (issue 14)
    # Reserved for the parallel issues (14, 15, 17, 18): portal pages, identity, health and metrics are entry
    # points; notification delivery is a job; the others are actions' helpers.
    "governance.portal_authoring": ENTRY, "governance.portal_compare": ENTRY, "governance.portal_discussion": ENTRY,
    "governance.portal_identity": ENTRY, "governance.portal_releases": ENTRY, "governance.portal_audit": ENTRY,
    "governance.portal_memberships": ENTRY,  # the program page's members and roles (issue 18)
    "governance.oidc": ENTRY, "governance.session_policy": ENTRY, "governance.health": ENTRY, "governance.metrics": ENTRY,
    "governance.logging": LIBRARY, "governance.notify": JOBS,
    "governance.comparisons": ACTIONS, "governance.playground": ACTIONS, "governance.memberships": ACTIONS,
    "governance.runner": JOBS, "governance.schedules": JOBS, "governance.studies": JOBS, "governance.evaluator": JOBS, "governance.jobs": JOBS, "governance.webhooks": JOBS,
    "governance.actions": ACTIONS, "governance.audit": ACTIONS, "governance.permissions": ACTIONS,
    "governance.bundles": ACTIONS, "governance.signing": ACTIONS, "governance.diffing": ACTIONS,
    "governance.reports": ACTIONS, "governance.webhook_checks": ACTIONS,
    "governance.models": MODELS, "governance.errors": MODELS, "governance.signals": MODELS,
    "governance.request_context": MODELS,
    "optimizer": LIBRARY,
}

# Function-level imports of project modules that are allowed, with why. Anything else is either a cycle being
# dodged or an import that belongs at the top of the module.
LAZY_IMPORTS: dict[tuple[str, str], str] = {
    ("governance.apps", "governance.signals"): "AppConfig.ready: receivers connect once the app registry is loaded",
    ("governance.apps", "governance.evaluator"): "AppConfig.ready: receivers connect once the app registry is loaded",
    ("governance.apps", "governance.runner"): "AppConfig.ready: receivers connect once the app registry is loaded",
    ("governance.apps", "governance.webhooks"): "AppConfig.ready: receivers connect once the app registry is loaded",
    ("governance.apps", "governance.notify"): "AppConfig.ready: receivers connect once the app registry is loaded",
    ("governance.jobs", "governance.celery"): "start-up cost: a process without a broker never loads Celery",
    ("governance.api.authentication", "governance.actions.tokens"):
        "settings load this module while rest_framework.views loads; the actions must not load then",
    ("governance.middleware", "governance.api.errors"): "DRF's error rendering loads on the first API exception",
}


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    lazy: bool  # inside a function or method

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}{' (function-level)' if self.lazy else ''}"


def governance_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((ROOT / "governance").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _targets(node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    # `from package import submodule` depends on the submodule; `from module import name` on the module
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


def project_imports() -> list[Import]:
    modules = governance_modules()
    known = set(modules)
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or getattr(node, "level", 0):
                continue
            for target in _targets(node, known):
                if target.split(".")[0] in ("governance", "optimizer"):
                    found.append(Import(name, target, node.lineno, lazy=id(node) not in top))
    return found


def layer_of(module: str) -> int:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}")


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.source, set()).add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_walker_sees_module_and_function_level_imports():
    imports = project_imports()
    assert any(i.source == "governance.runner" and i.target == "governance.jobs" and not i.lazy for i in imports)
    assert any(i.source == "governance.apps" and i.target == "governance.runner" and i.lazy for i in imports)
    assert import_cycles([Import("a", "b", 1, False), Import("b", "c", 2, True), Import("c", "a", 3, False)]) == [
        ["a", "b", "c"]]


def test_no_import_cycle_between_governance_modules():
    cycles = import_cycles([i for i in project_imports() if i.target.startswith("governance")])
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(cycle) for cycle in cycles)


def test_imports_go_down_the_layers_only():
    upward = [f"{i} ({LAYER_NAMES[layer_of(i.source)]} -> {LAYER_NAMES[layer_of(i.target)]})"
              for i in project_imports() if layer_of(i.target) > layer_of(i.source)]
    assert upward == [], "imports against the layer order:\n" + "\n".join(upward)


def test_function_level_imports_are_only_the_listed_ones():
    lazy = [str(i) for i in project_imports() if i.lazy and (i.source, i.target) not in LAZY_IMPORTS]
    assert lazy == [], ("function-level imports (move them to the top of the module, or list them in "
                        "LAZY_IMPORTS with the reason):\n" + "\n".join(lazy))


def test_every_listed_lazy_import_still_exists():
    present = {(i.source, i.target) for i in project_imports() if i.lazy}
    assert set(LAZY_IMPORTS) <= present, f"stale LAZY_IMPORTS entries: {sorted(set(LAZY_IMPORTS) - present)}"


def test_actions_announce_work_instead_of_calling_the_job_layer():
    """The actions never name the job layer or the task modules, not even in a function."""
    forbidden = ("governance.runner", "governance.evaluator", "governance.jobs", "governance.tasks",
                 "governance.webhook_tasks", "governance.webhooks", "governance.notify")
    found = [str(i) for i in project_imports()
             if i.source.startswith("governance.actions") and i.target.startswith(forbidden)]
    assert found == []


# --- the optimizer's facade -------------------------------------------------------------------------------------

# Submodules governance may import directly, with why (none today: optimizer.local_model would belong here, since
# importing it eagerly would cost the llama-cpp start-up).
OPTIMIZER_SUBMODULES_ALLOWED: dict[str, str] = {}


def test_governance_imports_the_optimizer_only_through_its_facade():
    direct = [str(i) for i in project_imports()
              if i.target.startswith("optimizer.") and i.target not in OPTIMIZER_SUBMODULES_ALLOWED]
    assert direct == [], "import these from `optimizer` (add them to optimizer/__init__.py):\n" + "\n".join(direct)


def test_every_name_governance_takes_from_the_optimizer_is_public():
    import optimizer

    taken = set()
    for path in governance_modules().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "optimizer":
                taken |= {alias.name for alias in node.names}
    assert taken and taken <= set(optimizer.__all__), sorted(taken - set(optimizer.__all__))
    assert all(getattr(optimizer, name) is not None for name in taken)


def test_governance_calls_the_optimizers_program_class_programspec():
    """`Program` in governance is the Django model; the optimizer's class is ProgramSpec (Program stays an alias)."""
    import optimizer

    assert optimizer.Program is optimizer.ProgramSpec and optimizer.ProgramSpec.__name__ == "ProgramSpec"
    for name, path in governance_modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("optimizer"):
                assert "Program" not in {alias.name for alias in node.names}, f"{name} imports Program: use ProgramSpec"


# --- one import style for the actions ----------------------------------------------------------------------------


def test_the_actions_are_imported_as_modules_outside_the_actions_package():
    """`from governance.actions import reviews as review_actions`, never names from the package or a submodule."""
    modules = governance_modules()
    found = []
    for name, path in modules.items():
        if name.startswith("governance.actions"):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("governance.actions"):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                if node.module != "governance.actions" or any(n not in modules for n in names):
                    found.append(f"{name}:{node.lineno} from {node.module} import "
                                 f"{', '.join(alias.name for alias in node.names)}")
    assert found == [], "\n".join(found)
