"""ruff (lint + format) and mypy on the package are part of the test suite."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *cmd], cwd=REPO, capture_output=True, text=True)


def test_ruff_lint() -> None:
    res = run("ruff", "check", "pipeline", "tests", "benchmarks")
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_format() -> None:
    res = run("ruff", "format", "--check", "pipeline", "tests", "benchmarks")
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy() -> None:
    res = run("mypy", "pipeline")
    assert res.returncode == 0, res.stdout + res.stderr
