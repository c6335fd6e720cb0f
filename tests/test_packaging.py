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
