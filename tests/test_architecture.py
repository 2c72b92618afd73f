"""Who imports whom (DESIGN.md, "Who imports whom"), read from the source with :mod:`ast`, nothing imported.

Every import counts: at module level, inside functions and under ``TYPE_CHECKING`` alike, because each is a
dependency a reader has to follow. The project's top-level folders are installed under the ``s2vc`` namespace
(``server/`` is ``s2vc.server``, and so on); modules are named here by their folder.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the folders installed as ``s2vc.<name>`` (pyproject.toml, [tool.setuptools.package-dir])
MAPPED = ("server", "engines", "export", "clients", "training", "evaluation")
PACKAGES = ("s2vc", *MAPPED)
#: where HTTP status codes are made: the app, its error mapping, its routes, the API-key dependency and the upload
#: middleware; everything else raises the domain errors of server/errors.py
HTTP_EDGE = ("server.app", "server.http_errors", "server.auth", "server.upload_limit", "server.routes_jobs", "server.routes_streams",
             "server.routes_webrtc")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_name(name: str) -> str | None:
    """``name`` as a folder module of this project (``s2vc.server.app`` → ``server.app``), else None."""
    head, _, rest = name.partition(".")
    if head == "s2vc" and rest.split(".")[0] in MAPPED:
        return rest
    return name if head in PACKAGES else None


def sources() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imported_names(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module name ``path`` imports (``from a import b`` yields ``a`` and ``a.b``), with its line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                # a relative import inside a mapped folder resolves within the folder, like the installed package
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:
                yield f"{target}.{alias.name}", node.lineno


def graph() -> dict[str, dict[str, int]]:
    """module → {imported project module: line}."""
    mods = sources()
    edges: dict[str, dict[str, int]] = {}
    for module, path in mods.items():
        out = edges.setdefault(module, {})
        for name, line in imported_names(module, path):
            target = project_name(name)
            if target in mods and target != module:
                out.setdefault(target, line)
    return edges


def external_imports(module: str) -> Iterator[tuple[str, int]]:
    yield from imported_names(module, sources()[module])


def _violations(rule) -> list[str]:
    return [f"{src} imports {dst} (line {line})" for src, out in graph().items() for dst, line in out.items() if rule(src, dst)]


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_import_circles() -> None:
    edges = graph()
    circles = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                circles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_codec_imports_nothing_of_the_project() -> None:
    assert not _violations(lambda s, d: _in(s, "s2vc") and not _in(d, "s2vc"))


def test_codec_modules_do_not_import_the_transport() -> None:
    assert not _violations(lambda s, d: _in(s, "s2vc") and not _in(s, "s2vc.transport") and _in(d, "s2vc.transport"))


def test_engines_do_not_import_export() -> None:
    assert not _violations(lambda s, d: _in(s, "engines") and _in(d, "export"))


def test_clients_talk_to_the_server_only_over_the_wire() -> None:
    assert not _violations(lambda s, d: _in(s, "clients") and (_in(d, "server") or _in(d, "engines") or _in(d, "export")))


def test_webrtc_libraries_stay_in_the_transport_under_s2vc() -> None:
    found = [f"{m} imports {name} (line {line})" for m in sources() if _in(m, "s2vc") and not _in(m, "s2vc.transport")
             for name, line in external_imports(m) if name.split(".")[0] in ("aiortc", "aioice")]
    assert not found


def test_http_exceptions_only_at_the_http_edge() -> None:
    found = []
    for module, path in sources().items():
        if module in HTTP_EDGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
            if name == "HTTPException" or (isinstance(node, ast.alias) and node.name.endswith("HTTPException")):
                found.append(f"{module}:{node.lineno}")
    assert not found, f"HTTPException outside the HTTP edge {HTTP_EDGE}: {found}"


def test_every_refusal_has_a_documented_status() -> None:
    from server import errors
    from server.http_errors import ERROR_RESPONSES, STATUS, status_of

    kinds = [k for k in vars(errors).values() if isinstance(k, type) and issubclass(k, errors.Refusal) and k is not errors.Refusal]
    assert set(kinds) == set(STATUS)
    assert all(status_of(kind("x")) in ERROR_RESPONSES for kind in kinds)
