"""Who imports whom (DESIGN.md, "Who imports whom"), read from the source with :mod:`ast`, nothing imported.

Every import counts: at module level, inside functions and under ``TYPE_CHECKING`` alike, because each is a
dependency a reader has to follow. The project's top-level folders are installed under the project's prefix
(``server/`` is the package ``s2vc_server``, and so on: pyproject.toml); modules are named here by their folder.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the folders installed as ``s2vc_<name>`` (pyproject.toml, [tool.setuptools.package-dir])
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
    """``name`` as a folder module of this project (``s2vc_server.app`` → ``server.app``), else None."""
    head, _, rest = name.partition(".")
    if head.startswith("s2vc_") and head[5:] in MAPPED:
        return ".".join(filter(None, (head[5:], rest)))
    return name if head in PACKAGES else None


def sources(packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    return {module_name(p): p for pkg in packages for p in sorted((ROOT / pkg).rglob("*.py"))}


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


def test_the_folders_are_imported_by_their_installed_names() -> None:
    """``import server`` works only inside a checkout (and would load a second copy of every module beside
    ``s2vc_server``): absolute imports name the installed packages."""
    found = []
    for module, path in sources((*PACKAGES, "tests")).items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{module}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in MAPPED]
    assert not found


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
    from s2vc_server import errors
    from s2vc_server.http_errors import ERROR_RESPONSES, STATUS, status_of

    kinds = [k for k in vars(errors).values() if isinstance(k, type) and issubclass(k, errors.Refusal) and k is not errors.Refusal]
    assert set(kinds) == set(STATUS)
    assert all(status_of(kind("x")) in ERROR_RESPONSES for kind in kinds)


def test_pyproject_installs_every_folder_under_the_prefix() -> None:
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {f"s2vc_{name}": name for name in MAPPED}
    packages = {p for p in sources() if (ROOT / p.replace(".", "/") / "__init__.py").is_file() and p.split(".")[0] in PACKAGES}
    assert set(setuptools["packages"]) == {".".join(filter(None, (f"s2vc_{p.split('.')[0]}" if p.split(".")[0] in MAPPED else p.split(".")[0],
                                                                  *p.split(".")[1:]))) for p in packages}


def test_outside_the_checkout_only_the_prefixed_names_import(tmp_path) -> None:
    """After ``make install``: ``import server`` fails outside the repository, ``import s2vc_server`` works."""
    from importlib import metadata

    try:
        metadata.distribution("s2vc")
    except metadata.PackageNotFoundError:
        pytest.skip("the project is not installed here (make install)")
    probe = ("import importlib.util, json, sys; sys.path = [p for p in sys.path if p not in ('', '.')]; "
             f"print(json.dumps({{n: importlib.util.find_spec(n) is not None for n in {[*MAPPED, *(f's2vc_{m}' for m in MAPPED), 's2vc']!r}}}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    found = json.loads(subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                                      check=True, timeout=60).stdout)
    assert found == {**{name: False for name in MAPPED}, **{f"s2vc_{name}": True for name in MAPPED}, "s2vc": True}
