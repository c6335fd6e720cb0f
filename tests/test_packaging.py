"""The wheel carries prompts and the demo generator, and works outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(out.glob("tablechat-*.whl"))


def test_wheel_contains_package_prompts_and_demo_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "tablechat/__init__.py",
        "tablechat/_resources/prompts/sql.md",
        "tablechat/_resources/data/demo/build.sql",
        "tablechat/_resources/data/demo/semantic.yaml",
    ):
        assert required in names
    assert not any(n.endswith(".duckdb") for n in names), "no built database in the wheel"
    entry = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith("entry_points.txt")))
        .decode()
    )
    assert "tablechat = tablechat.cli:main" in entry


def test_installed_wheel_builds_the_demo_in_the_user_data_dir(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    code = (
        "import tablechat, pathlib;"
        "assert 'site' in tablechat.__file__, tablechat.__file__;"
        "tc = tablechat.connect();"
        "print(tc.database.path);"
        "print(tc.run_sql('SELECT count(*) FROM regions').rows)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == str(tmp_path / "xdg" / "tablechat" / "demo.duckdb")
    assert lines[1] == "[(5,)]"


# --- extras (issue 15): every import declared, the core without the web layer ----------------

WEB_ONLY = ("gradio", "fastapi", "starlette", "uvicorn", "multipart", "python_multipart")


def _declared() -> dict[str, set[str]]:
    """Requirement names (normalized) per group: "core" and each extra."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs: list[str]) -> set[str]:
        out = set()
        for req in reqs:
            name = re.match(r"[A-Za-z0-9_.-]+", req)
            assert name is not None, req
            out.add(re.sub(r"[-_.]+", "-", name.group(0)).lower())
        return out

    groups = {"core": names(project["dependencies"])}
    for extra, reqs in project["optional-dependencies"].items():
        groups[extra] = names(reqs)
    return groups


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level package names a module imports: at module level, and anywhere (lazily)."""
    import ast

    tree = ast.parse(path.read_text())
    top: set[str] = set()
    every: set[str] = set()
    module_level = set(map(id, tree.body))
    for node in ast.walk(tree):
        found: list[str] = []
        if isinstance(node, ast.Import):
            found = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found = [node.module.split(".")[0]]
        every.update(found)
        if id(node) in module_level:
            top.update(found)
    return top, every


def _distribution(package: str) -> str:
    from importlib.metadata import packages_distributions

    dists = packages_distributions().get(package)
    assert dists, f"{package} is imported but no installed distribution provides it"
    import re

    return re.sub(r"[-_.]+", "-", dists[0]).lower()


def test_every_imported_package_is_declared_in_the_right_group() -> None:
    """Module-level imports outside web/ need core packages; web/ may use the web extra;
    a lazy import (inside a function) may need any extra."""
    groups = _declared()
    core = groups["core"]
    extras = set().union(*(v for k, v in groups.items() if k != "dev"))
    stdlib = set(sys.stdlib_module_names) | {"tablechat"}
    optional = {"uvloop"}  # _loop.py tries it and falls back to asyncio's loop
    problems = []
    package = ROOT / "app" / "tablechat"
    for path in sorted(package.rglob("*.py")):
        top, every = _imports(path)
        rel = path.relative_to(package).as_posix()
        in_web = rel.startswith("web/")
        for name in sorted(every - stdlib - optional):
            dist = _distribution(name)
            if name in top and not in_web:
                allowed = core
            elif name in top:
                allowed = core | groups["web"]
            else:
                allowed = extras
            if dist not in allowed:
                problems.append(f"{rel} imports {name} ({dist}), not declared where it may be")
    assert not problems, "\n".join(problems)


def test_the_core_needs_no_web_packages() -> None:
    groups = _declared()
    for dist in ("gradio", "fastapi", "uvicorn", "python-multipart", "starlette", "aiohttp"):
        assert dist not in groups["core"], dist
        if dist != "aiohttp":
            assert dist in groups["web"], dist
    assert "psycopg" in groups["postgres"] and "xllamacpp" in groups["local"]
    # `make install` installs .[dev]: it stays the union of the others
    assert {"tablechat"} == groups["dev"]
    assert set(_dev_extras()) == {"web", "postgres", "local", "test", "lint", "bench"}
    # nor does anything the core's packages pull in (their installed metadata)
    assert not _closure(_core_requirements()) & set((*WEB_ONLY, "python-multipart", "aiohttp"))


def _core_requirements() -> list[str]:
    import tomllib

    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution ``requirements`` install, read from the installed packages' metadata
    (extras followed only where asked for)."""
    import re
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    seen: set[str] = set()
    stack = [Requirement(r) for r in requirements]
    while stack:
        req = stack.pop()
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(req.name).requires or []
        except PackageNotFoundError:
            continue
        for text in requires:
            sub = Requirement(text)
            if sub.marker is None or any(
                sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)
            ):
                stack.append(sub)
    return seen


def _dev_extras() -> list[str]:
    import re
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["dev"]
    (only,) = deps
    match = re.fullmatch(r"tablechat\[([a-z,]+)\]", only)
    assert match is not None, only
    return match.group(1).split(",")


# Blocks the web layer's packages: importing one raises ImportError as if not installed.
_BLOCKER = f"""
import importlib.abc, sys
BLOCKED = {(*WEB_ONLY, "aiohttp")!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None
sys.meta_path.insert(0, Block())
for name in list(sys.modules):
    if name.split(".")[0] in BLOCKED:
        del sys.modules[name]
"""


def _run_blocked(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "app"), "TABLECHAT_LLM_URL": "",
           "XDG_DATA_HOME": str(tmp_path / "xdg")}
    return subprocess.run([sys.executable, "-c", _BLOCKER + code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_core_imports_and_answers_with_the_web_packages_blocked(
    tmp_path: Path, demo_db: Path
) -> None:
    code = f"""
import importlib, pkgutil, sys
import tablechat
skipped = {{"tablechat.__main__", "tablechat.openai_transport"}}
for info in pkgutil.walk_packages(tablechat.__path__, "tablechat."):
    if info.name.split(".")[:2] == ["tablechat", "web"] or info.name in skipped:
        continue
    importlib.import_module(info.name)
tc = tablechat.connect({str(demo_db)!r}, llm_url="")
answer = tc.ask("How many customers are there?")
print(answer.error, answer.rows)
print(tc.run_sql("SELECT count(*) FROM regions").rows)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(leaked)
"""
    proc = _run_blocked(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-3] == "None [(5000,)]"
    assert lines[-2] == "[(5,)]"
    assert lines[-1] == "[]"


def test_serve_without_the_web_extra_names_it(tmp_path: Path, demo_db: Path) -> None:
    code = ("import sys; from tablechat.cli import main;"
            f"sys.exit(main(['serve', '--database', {str(demo_db)!r}]))")
    proc = _run_blocked(code, tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    message = proc.stderr.strip().splitlines()
    assert len(message) == 1 and "pip install 'tablechat[web]'" in message[0], message
