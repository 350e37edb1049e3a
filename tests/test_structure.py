"""The shape of the code: pages lay out widgets in small functions, and imports point down."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "llm_playground"
MAX_PAGE_BLOCK_LINES = 40
DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def is_data(node: ast.stmt) -> bool:
    """A docstring, or a CONSTANT = <a literal> (a table of examples, the lab cards)."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return True
    if isinstance(node, ast.Assign) and all(
        isinstance(target, ast.Name) and target.id.isupper() for target in node.targets
    ):
        try:
            ast.literal_eval(node.value)
        except ValueError:
            return False
        return True
    return False


def long_module_blocks(source: str, limit: int = MAX_PAGE_BLOCK_LINES) -> list[tuple[int, int]]:
    """(first line, lines spanned) of each module-level statement, other than an import, a
    definition or plain data, that spans more than ``limit`` lines."""
    found = []
    for node in ast.parse(source).body:
        if isinstance(node, DEFINITIONS) or is_data(node):
            continue
        span = node.end_lineno - node.lineno + 1
        if span > limit:
            found.append((node.lineno, span))
    return found


def test_the_block_measure_sees_a_long_block_and_passes_a_short_one():
    long_page = "import streamlit as st\nwith st.sidebar:\n" + "    st.write(1)\n" * 45
    assert long_module_blocks(long_page) == [(2, 46)]
    short_page = "def tab():\n" + "    st.write(1)\n" * 45 + "with st.sidebar:\n    tab()\n"
    assert long_module_blocks(short_page) == []
    table = "EXAMPLES = [\n" + '    ("a", "b"),\n' * 45 + "]\n"
    assert long_module_blocks(table) == []
    computed = "rows = [\n" + "    st.write(1),\n" * 45 + "]\n"
    assert long_module_blocks(computed) == [(1, 47)]


@pytest.mark.parametrize(
    "page", sorted(SRC.joinpath("ui").rglob("*.py")), ids=lambda p: str(p.relative_to(SRC))
)
def test_pages_keep_their_module_level_blocks_short(page):
    """Each tab and section of a page is a function of its own: no statement at module level
    (a `with` over a whole tab, an `if` over a section) runs over 40 lines."""
    assert long_module_blocks(page.read_text(encoding="utf-8")) == [], (
        f"{page.name}: move the long block into a function of its own"
    )


# --- import contracts -----------------------------------------------------------------------

ROOT = SRC.parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """Run the contracts of ``tree``/pyproject.toml on the package under ``tree``/src."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def package_copy(tmp_path) -> Path:
    """The package's sources and pyproject.toml in a folder of their own."""
    shutil.copytree(SRC, tmp_path / "src" / "llm_playground", ignore=shutil.ignore_patterns("data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_import_contracts_hold(package_copy):
    result = lint_imports(package_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_a_cycle_through_an_import_inside_a_function_breaks_the_contracts(package_copy):
    # tokenization is below generation (generation -> training -> tokenization): a
    # tokenization module that reaches up, even from inside a function, closes a cycle
    package = package_copy / "src" / "llm_playground"
    (package / "tokenization" / "throwaway.py").write_text(
        "def later():\n    from llm_playground.generation import decoding\n\n    return decoding\n"
    )
    result = lint_imports(package_copy)
    assert result.returncode == 1
    assert "no import cycles between packages or between modules of a package BROKEN" in (
        result.stdout
    )
    assert "No cycles are allowed in llm_playground.\n" in result.stdout


def test_core_reaching_into_a_lab_breaks_the_layers(package_copy):
    package = package_copy / "src" / "llm_playground"
    (package / "core" / "throwaway.py").write_text("import llm_playground.training.model\n")
    result = lint_imports(package_copy)
    assert result.returncode == 1
    assert "ui and cli over the labs over core; ui and cli independent BROKEN" in result.stdout
    assert "llm_playground.core.throwaway -> llm_playground.training.model" in result.stdout
