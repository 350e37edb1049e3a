"""The shape of the code: pages lay out widgets in small functions, and imports point down."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "llm_playground"
MAX_PAGE_BLOCK_LINES = 40
DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def long_module_blocks(source: str, limit: int = MAX_PAGE_BLOCK_LINES) -> list[tuple[int, int]]:
    """(first line, lines spanned) of each module-level statement, other than an import or a
    definition, that spans more than ``limit`` lines."""
    found = []
    for node in ast.parse(source).body:
        if isinstance(node, DEFINITIONS):
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


@pytest.mark.parametrize(
    "page", sorted(SRC.joinpath("ui").rglob("*.py")), ids=lambda p: str(p.relative_to(SRC))
)
def test_pages_keep_their_module_level_blocks_short(page):
    """Each tab and section of a page is a function of its own: no statement at module level
    (a `with` over a whole tab, an `if` over a section) runs over 40 lines."""
    assert long_module_blocks(page.read_text(encoding="utf-8")) == [], (
        f"{page.name}: move the long block into a function of its own"
    )
