"""What `pip install .` ships: every subpackage, one version, a working `python -m llmpress`."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import setuptools

import llmpress

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def test_every_source_folder_is_a_package_the_build_finds():
    # A folder of modules without __init__.py is silently left out of the wheel.
    with_modules = {".".join(d.relative_to(SRC).parts) for d in (SRC / "llmpress").rglob("*")
                    if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))} | {"llmpress"}
    assert set(setuptools.find_packages(str(SRC))) == with_modules


def test_no_data_files_that_the_wheel_would_leave_behind():
    # A non-Python file under src/llmpress is installed only if pyproject's package-data names it.
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"].get("package-data", {})
    shipped = {f for package, globs in declared.items() for g in globs
               for f in (SRC / package.replace(".", "/")).glob(g)}
    stray = [p for p in (SRC / "llmpress").rglob("*")
             if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts and p not in shipped]
    assert stray == []
    assert SRC / "llmpress" / "kernels" / "lut_native.c" in shipped  # the native kernel's source


def test_version_is_defined_once_and_read_by_the_build_and_the_cli():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "llmpress.__version__"}
    literal = re.compile(r"""(__version__|^version)\s*=\s*["']""", re.M)
    holders = [p.relative_to(REPO).as_posix() for p in [*SRC.rglob("*.py"), REPO / "pyproject.toml"]
               if literal.search(p.read_text())]
    assert holders == ["src/llmpress/__init__.py"]
    out = subprocess.run([sys.executable, "-m", "llmpress", "--version"], capture_output=True, text=True,
                         cwd=REPO, env={"PYTHONPATH": str(SRC)}, check=True)
    assert out.stdout.strip() == f"llmpress {llmpress.__version__}"


def test_extras_name_the_optional_parts():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"plot", "eval", "dev"} <= set(extras)
    assert any(r.startswith("matplotlib") for r in extras["plot"])
    assert any(r.startswith("lm-eval") for r in extras["eval"])
    # dev stays light: the heavy optional parts come through their own extras.
    assert not any(r.startswith(("matplotlib", "lm-eval", "datasets")) for r in extras["dev"])
    makefile = (REPO / "Makefile").read_text()
    # the plot and harness tests need matplotlib and lm-eval: `make test` installs their extras
    assert "'.[dev,plot,eval]'" in makefile
