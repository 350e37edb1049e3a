"""Colour-coded HTML of a tokenized text: one span per token, hover for id and bytes.

The same fragment is shown by the app and printed by ``llm-playground tokenize --format
html``. Every piece of user text is HTML-escaped (quotes included). Only the first
``max_pieces`` tokens are rendered, followed by a notice, so a pasted book never
freezes the browser.
"""

from __future__ import annotations

import html

from llm_playground.tokenization.tokenizer import Tokenized

MAX_PIECES = 2000

# Pastel backgrounds that keep dark text readable; neighbours always differ.
PALETTE = ("#fde68a", "#bbf7d0", "#bfdbfe", "#fecaca", "#ddd6fe", "#fed7aa", "#a5f3fc", "#f5d0fe")

STYLE = (
    ".lp-tokens{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:0.95rem;"
    "line-height:1.9;white-space:pre-wrap;word-break:break-word;color:#111827;direction:ltr;text-align:left}"
    # Each token is isolated, so tokens read in their order even inside right-to-left text.
    ".lp-tok{border-radius:3px;padding:1px 0;margin-right:1px;unicode-bidi:isolate}"
    ".lp-tok.lp-changed{outline:2px solid #dc2626}"
    ".lp-tok.lp-partial{outline:1px dashed #6b7280;font-style:italic}"
    ".lp-ctl{color:#6b7280}"
    ".lp-notice{color:#92400e;font-size:0.9rem;margin-top:0.4rem}"
)


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def visible(piece: str) -> str:
    """A piece as plain text with its spaces, tabs and line breaks made visible (␣ → ↵)."""
    return (
        piece.replace(" ", "\u2423")
        .replace("\t", "\u2192")
        .replace("\r", "\u240d")
        .replace("\n", "\u21b5")
    )


def _shown(piece: str) -> str:
    """Escaped piece text, with line breaks and tabs made visible."""
    out = esc(piece)
    if "\n" in out or "\t" in out or "\r" in out:
        out = (
            out.replace("\r", '<span class="lp-ctl">\u240d</span>')
            .replace("\t", '<span class="lp-ctl">\u2192</span>\t')
            .replace("\n", '<span class="lp-ctl">\u21b5</span>\n')
        )
    return out


def render_tokens_html(
    result: Tokenized,
    max_pieces: int = MAX_PIECES,
    token_bytes=None,
    highlight: set[int] | None = None,
    include_style: bool = True,
) -> str:
    """The colour-coded fragment for ``result``.

    ``token_bytes(id) -> bytes`` gives the hover's bytes; without it they are read from
    ``result.offsets`` and the text. ``highlight`` marks token positions (e.g. those that
    cleaning changed) with an outline.
    """
    text_bytes = None if token_bytes else result.text.encode("utf-8")
    n = len(result.ids)
    shown = min(n, max(0, max_pieces))
    parts = [f"<style>{STYLE}</style>"] if include_style else []
    parts.append(
        f'<div class="lp-tokens" data-tokenizer="{esc(result.tokenizer)}" data-tokens="{n}">'
    )
    for i in range(shown):
        tid = result.ids[i]
        piece = result.pieces[i]
        data = (
            token_bytes(tid)
            if token_bytes
            else text_bytes[result.offsets[i] : result.offsets[i + 1]]
        )
        hexes = " ".join(f"{b:02x}" for b in data)
        partial = "\\x" in piece and piece != data.decode("utf-8", errors="replace")
        classes = (
            "lp-tok"
            + (" lp-partial" if partial else "")
            + (" lp-changed" if highlight and i in highlight else "")
        )
        title = f"id {tid} \u00b7 bytes {hexes}" + (
            " \u00b7 part of a multi-byte character" if partial else ""
        )
        parts.append(
            f'<span class="{classes}" style="background:{PALETTE[i % len(PALETTE)]}" '
            f'title="{esc(title)}">{_shown(piece)}</span>'
        )
    parts.append("</div>")
    if shown < n:
        parts.append(
            f'<p class="lp-notice">Showing the first {shown:,} of {n:,} tokens; '
            f"the counts and ids cover the whole text.</p>"
        )
    return "".join(parts)
