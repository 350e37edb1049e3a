"""Pre-cleaning text before tokenization, and what the cleaning changed in the tokens.

* :func:`strip_html` parses HTML with the standard library's parser: entities are
  decoded, ``script``/``style`` (and ``template``, ``noscript``) content is dropped, and
  block elements (paragraphs, headings, list items, ``br``, table rows...) become line
  breaks.
* :func:`normalize_whitespace` turns every run of spaces and tabs into one space, trims
  lines, unifies line endings and keeps at most one blank line in a row.
* :func:`nfkc` applies Unicode NFKC normalisation (ligatures, full-width forms,
  superscripts and the like become their plain equivalents).

:func:`token_diff` compares token ids before and after with ``difflib``.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser

from llm_playground.core.errors import UserError

STEPS = ("html", "whitespace", "nfkc")

# Tags whose content starts on a new line; paragraph-like ones are set apart by a blank line.
LINE_TAGS = frozenset(
    {
        "address",
        "article",
        "aside",
        "body",
        "br",
        "caption",
        "dd",
        "details",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "head",
        "header",
        "html",
        "li",
        "main",
        "nav",
        "section",
        "summary",
        "tbody",
        "thead",
        "tfoot",
        "tr",
    }
)
PARAGRAPH_TAGS = frozenset(
    {
        "blockquote",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "ol",
        "p",
        "pre",
        "table",
        "title",
        "ul",
    }
)
BLOCK_TAGS = LINE_TAGS | PARAGRAPH_TAGS
CELL_TAGS = frozenset({"td", "th"})
DROPPED_TAGS = frozenset({"script", "style", "template", "noscript"})
_SPACES = re.compile(r"[ \t\n\r\f]+")  # HTML whitespace (not &nbsp;)


class _TextExtractor(HTMLParser):
    """Collects text the way a browser lays it out: source whitespace collapses (except in
    ``pre``), blocks start new lines, and consecutive block edges give one break."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.in_pre = 0
        self.pending = 0  # line breaks owed before the next text
        self.pending_tab = False

    def _block(self, tag: str) -> None:
        self.pending = max(self.pending, 2 if tag in PARAGRAPH_TAGS else 1)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in DROPPED_TAGS:
            self.skipping += 1
            return
        if tag == "pre":
            self.in_pre += 1
        if tag in BLOCK_TAGS:
            self._block(tag)
        elif tag in CELL_TAGS and self.parts and not self.pending:
            self.pending_tab = True

    def handle_startendtag(self, tag: str, attrs: list) -> None:  # <br/>: one break, not two
        if tag in BLOCK_TAGS:
            self._block(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in DROPPED_TAGS:
            self.skipping = max(0, self.skipping - 1)
            return
        if tag == "pre":
            self.in_pre = max(0, self.in_pre - 1)
        if tag in BLOCK_TAGS:
            self._block(tag)

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if not self.in_pre:
            data = _SPACES.sub(" ", data)
            if self.pending or (self.parts and self.parts[-1].endswith(("\n", " ", "\t"))):
                data = data.lstrip(" ")
            if not data:
                return
        if self.parts:
            if self.pending:
                self.parts.append("\n" * self.pending)
            elif self.pending_tab:
                self.parts.append("\t")
        self.pending = 0
        self.pending_tab = False
        self.parts.append(data)


def strip_html(text: str) -> str:
    """The text of an HTML document or fragment, with line breaks where blocks were."""
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    out = "".join(parser.parts)
    out = re.sub(r" +\n", "\n", out)  # no spaces left hanging before a break
    return out.strip()


_HSPACE = re.compile(r"[^\S\n]+")  # any whitespace except a line break


def normalize_whitespace(text: str) -> str:
    """One space for each run of spaces/tabs, trimmed lines, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _HSPACE.sub(" ", text)
    text = re.sub(r" ?\n ?", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def parse_steps(spec: str | Iterable[str] | None) -> list[str]:
    """``"html,whitespace"`` or a list of step names -> the steps, checked, in the order given."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    steps = [s.strip().lower() for s in items if s.strip()]
    for step in steps:
        if step not in STEPS:
            raise UserError(f"unknown cleaning step {step!r}; choose from {', '.join(STEPS)}")
    return steps


def clean(text: str, steps: str | Iterable[str] | None) -> str:
    """Apply cleaning steps: HTML first, then NFKC, then whitespace (whatever order is given)."""
    chosen = set(parse_steps(steps))
    if "html" in chosen:
        text = strip_html(text)
    if "nfkc" in chosen:
        text = nfkc(text)
    if "whitespace" in chosen:
        text = normalize_whitespace(text)
    return text


@dataclass
class TokenDiff:
    """How token ids changed: ``opcodes`` from difflib, and counts of each kind."""

    before: list[int]
    after: list[int]
    opcodes: list[tuple[str, int, int, int, int]]
    truncated: bool = False  # only the first ``limit`` tokens of each side were compared

    @property
    def unchanged(self) -> int:
        return sum(i2 - i1 for tag, i1, i2, _, _ in self.opcodes if tag == "equal")

    @property
    def removed(self) -> int:
        """Tokens of the original that are gone (deleted or replaced)."""
        return sum(i2 - i1 for tag, i1, i2, _, _ in self.opcodes if tag in ("delete", "replace"))

    @property
    def added(self) -> int:
        """Tokens of the cleaned text that are new (inserted or replacing others)."""
        return sum(j2 - j1 for tag, _, _, j1, j2 in self.opcodes if tag in ("insert", "replace"))

    def changed_after(self) -> set[int]:
        """Positions in ``after`` of tokens that are new."""
        return {j for tag, _, _, j1, j2 in self.opcodes if tag != "equal" for j in range(j1, j2)}

    def changed_before(self) -> set[int]:
        """Positions in ``before`` of tokens that went away."""
        return {i for tag, i1, i2, _, _ in self.opcodes if tag != "equal" for i in range(i1, i2)}


def token_diff(before: list[int], after: list[int], limit: int | None = 20_000) -> TokenDiff:
    """Which tokens changed, by ``difflib.SequenceMatcher`` on the ids (the first ``limit``
    of each side, so that a pasted book stays quick)."""
    truncated = limit is not None and (len(before) > limit or len(after) > limit)
    if truncated:
        before, after = before[:limit], after[:limit]
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    return TokenDiff(
        list(before), list(after), [tuple(op) for op in matcher.get_opcodes()], truncated
    )
