"""The import graph of every package in the repository: cycles and layer rules.

    .venv/bin/python scripts/imports.py          # prints each problem; exit status 1 if any

Python imports are read with `ast` (function-level imports too), TypeScript imports with a
regular expression over `import ... from "./..."` (type-only imports included: a cycle of types
is still a cycle for a reader). Rules beyond "no cycle":

- sam2_inference: `api` > `image` | `video` > `runtime` > `scheduling` > `config`; a module
  imports only from its own package or one below it, and nothing below `api/` imports FastAPI,
  Starlette or uvicorn.
- sam2_gateway: `core/` imports nothing of the gateway above it; `api/` nothing of `main`,
  `cli`, `server` or `stack`.
- sam2_contract: only its HTTP edge (`problems`, `forms`) imports Starlette.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON_ROOTS = {
    "sam2_contract": ROOT / "shared/src/sam2_contract",
    "sam2_inference": ROOT / "services/inference/src/sam2_inference",
    "sam2_gateway": ROOT / "services/gateway/src/sam2_gateway",
    "sam2_sdk": ROOT / "sdk-python/src/sam2_sdk",
}
TS_ROOT = ROOT / "sdk-js/src"
INFERENCE_RANKS = {"api": 4, "image": 3, "video": 3, "runtime": 2, "scheduling": 1, "config": 0}
WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn")
CONTRACT_HTTP_EDGE = {"sam2_contract.problems", "sam2_contract.forms"}
GATEWAY_TOP = {"main", "cli", "server", "stack", "__main__"}

Graph = dict[str, set[str]]


def python_modules() -> dict[str, Path]:
    """Every module of the four packages, by dotted name."""
    modules = {}
    for package, folder in PYTHON_ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def imported_names(path: Path) -> Iterator[str]:
    """The dotted names a module imports (`from a.b import c` gives `a.b` and `a.b.c`)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def python_graph() -> tuple[Graph, dict[str, set[str]]]:
    """Edges between the packages' modules, and every module's external imports."""
    modules = python_modules()
    graph: Graph = {name: set() for name in modules}
    external: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target in imported_names(path):
            if target in modules and target != name:
                graph[name].add(target)
            elif target.split(".")[0] not in PYTHON_ROOTS:
                external[name].add(target.split(".")[0])
    return graph, external


def ts_graph() -> Graph:
    """Edges between the TypeScript SDK's source files (relative imports only)."""
    pattern = re.compile(r"""(?:import|export)[^"';]*?from\s+["'](\.[^"']+)["']""", re.S)
    files = {p.relative_to(TS_ROOT).as_posix(): p for p in TS_ROOT.rglob("*.ts*")}
    graph: Graph = {name: set() for name in files}
    for name, path in files.items():
        for spec in pattern.findall(path.read_text()):
            target = (path.parent / spec).resolve().relative_to(TS_ROOT.resolve()).as_posix()
            target = re.sub(r"\.js$", "", target)
            for candidate in (f"{target}.ts", f"{target}.tsx", f"{target}/index.ts"):
                if candidate in graph:
                    graph[name].add(candidate)
                    break
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_problems(graph: Graph, external: dict[str, set[str]]) -> Iterator[str]:
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            why = _forbidden(source, target)
            if why:
                yield f"{source} imports {target}: {why}"
        if _inference_part(source) not in (None, "api") and external[source] & set(WEB_FRAMEWORKS):
            yield f"{source} imports a web framework below api/"
        frameworks = external[source] & set(WEB_FRAMEWORKS)
        if source.startswith("sam2_contract.") and frameworks and source not in CONTRACT_HTTP_EDGE:
            yield f"{source} imports {', '.join(sorted(frameworks))} outside the HTTP edge"


def _inference_part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "sam2_inference" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in INFERENCE_RANKS else None


def _forbidden(source: str, target: str) -> str | None:
    """Why `source` may not import `target` (None: it may)."""
    ours, theirs = _inference_part(source), _inference_part(target)
    if ours and theirs and ours != theirs and INFERENCE_RANKS[theirs] >= INFERENCE_RANKS[ours]:
        return f"{ours}/ may import only the packages below it"
    gateway = target.split(".")[1] if target.startswith("sam2_gateway.") else None
    if source.startswith("sam2_gateway.core.") and gateway not in (None, "core"):
        return "core/ imports nothing above it"
    if source.startswith("sam2_gateway.api.") and gateway in GATEWAY_TOP:
        return "api/ imports nothing of the process around it"
    return None


def problems() -> list[str]:
    graph, external = python_graph()
    found = [f"cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    found += [f"cycle: {' <-> '.join(c)}" for c in cycles(ts_graph())]
    found += list(layer_problems(graph, external))
    return found


def main() -> int:
    found = problems()
    for problem in found:
        print(problem)
    graph, _ = python_graph()
    edges = sum(len(t) for t in graph.values()) + sum(len(t) for t in ts_graph().values())
    print(
        f"{len(graph)} Python modules, {len(ts_graph())} TypeScript files, {edges} imports: "
        f"{len(found)} problem(s)"
    )
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
