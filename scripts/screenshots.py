"""Take a screenshot of every page of the running app (for the README and for review).

    .venv/bin/python scripts/screenshots.py [--url http://127.0.0.1:8501] [--out docs/screenshots]
    .venv/bin/python scripts/screenshots.py --journeys [--pages tokenizer,training]

Plain mode saves page-<name>.png of each page as it first opens. ``--journeys`` uses each
lab like a person would (picks an example, trains a bigram model briefly, generates with
SmolLM2, compares the Gemma base with its adapter, computes a perplexity, opens Lab 1's
"How it works in code") and saves the README screenshots home.png and labN-<lab>.png; a journey that fails leaves
failed-<name>.png in the temporary folder and the script exits with 1.

Without ``--url`` it starts the app on a free port itself and stops it afterwards.
Uses Debian's Chromium through Playwright; it never downloads a browser.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["home", "tokenizer", "training", "generation", "finetuner", "evaluator", "inside"]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _start_app() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "src/llm_playground/ui/app.py"),
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the app did not start")


# --- journeys: drive each lab like a person, then screenshot it ----------------------------

VIEWPORT = {"width": 1400, "height": 2600}
JOURNEYS = [
    "home",
    "tokenizer",
    "training",
    "generation",
    "finetuner",
    "evaluator",
    "inside",
    "code",
]
FILES = {
    "home": "home.png",
    "tokenizer": "lab1-tokenizer.png",
    "training": "lab2-training.png",
    "generation": "lab3-generation.png",
    "finetuner": "lab4-finetuner.png",
    "evaluator": "lab5-evaluator.png",
    "inside": "lab6-inside.png",
    "code": "lab1-code.png",
}
LONG = 240_000  # model loads and generation on a busy 2-core CPU are slow


def _key(key: str) -> str:
    """Streamlit puts a widget's key on its container as the CSS class st-key-<key>."""
    return f".st-key-{key}"


def _settle(tab, quiet_s: float = 1.5, timeout_s: float = 240) -> None:
    """Wait until the script run is over: no 'Running…' status and no placeholder skeleton
    (a page's first run, which imports torch, draws skeletons first) for quiet_s seconds."""
    status = tab.locator("[data-testid='stStatusWidget'], [data-testid='stSkeleton']")
    deadline = time.time() + timeout_s
    quiet_since = None
    while time.time() < deadline:
        if status.count() and status.first.is_visible():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since >= quiet_s:
            return
        time.sleep(0.25)


def _open(tab, url: str, path: str) -> None:
    tab.goto(f"{url}/{path}")
    tab.wait_for_selector("[data-testid='stMain']", timeout=60_000)
    tab.wait_for_selector("[data-testid='stSidebarNav']", timeout=60_000)
    _settle(tab)


def _select(tab, key: str, option: str) -> None:
    """Open a select box by its key and click one of its options."""
    tab.locator(f"{_key(key)} [role='combobox']").first.click()
    tab.locator("[role='option']", has_text=option).first.click()
    _settle(tab)


def _number(tab, key: str, value: int) -> None:
    box = tab.locator(f"{_key(key)} input")
    box.fill(str(value))
    box.press("Enter")
    _settle(tab)


def _click(tab, key: str) -> None:
    tab.locator(f"{_key(key)} button").first.click()


def _shot(tab, out: Path, name: str, anchor: str | None = None) -> None:
    """Screenshot the window; scroll the main container to `anchor` (a selector) first."""
    tab.locator("[data-testid='stMain']").evaluate("el => el.scrollTo(0, 0)")
    if anchor:
        tab.locator(anchor).first.scroll_into_view_if_needed()
    tab.mouse.move(5, 5)  # no hover tooltips
    tab.evaluate("() => document.activeElement && document.activeElement.blur()")  # no focus ring
    time.sleep(1.5)  # charts animate in
    # crop the empty space below the content when the page is shorter than the window
    bottom = tab.locator("[data-testid='stMainBlockContainer']").evaluate(
        "el => el.getBoundingClientRect().bottom"
    )
    height = int(min(VIEWPORT["height"], max(800, bottom)))
    path = out / FILES[name]
    tab.screenshot(
        path=str(path), clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height}
    )
    print(path, flush=True)


def journey_home(tab, url: str, out: Path) -> None:
    _open(tab, url, "")
    tab.get_by_text("Open the lab").first.wait_for()
    _shot(tab, out, "home")


def journey_tokenizer(tab, url: str, out: Path) -> None:
    _open(tab, url, "tokenizer")
    _select(tab, "tok_example", "Several languages")
    tab.get_by_text("o200k_base").first.wait_for()
    for name in ("gpt2", "cl100k_base", "o200k_base"):  # the three default tokenizers, side by side
        tab.locator("h4", has_text=name).first.wait_for(timeout=LONG)
    _shot(tab, out, "tokenizer")


def journey_training(tab, url: str, out: Path, iters: int = 250) -> None:
    _open(tab, url, "training")
    _select(tab, "train_preset", "bigram")
    thumb = tab.locator(f"{_key('train_max_iters')} input[type='range']")
    thumb.focus()
    thumb.press("Home")  # 50
    for _ in range(max(0, (iters - 50) // 50)):
        thumb.press("ArrowRight")
    _settle(tab)
    _click(tab, "train_start")
    # the run is over when the success note shows; then the chart has its eval points and a sample
    tab.get_by_text("Sample at step").first.wait_for(timeout=LONG)
    tab.locator("[data-testid='stAlertContentSuccess']", has_text="after").first.wait_for(
        timeout=LONG
    )
    _settle(tab)
    _shot(tab, out, "training", anchor=_key("train_start"))


def journey_generation(tab, url: str, out: Path) -> None:
    _open(tab, url, "generation")
    _select(tab, "gen_example", "Haiku")
    tab.locator(_key("gen_strategy")).get_by_text("Top-p (nucleus) sampling").click()
    _settle(tab)
    _number(tab, "gen_max_new", 16)
    tab.locator(f"{_key('gen_run')} button:not([disabled])").wait_for(timeout=LONG)
    _click(tab, "gen_run")
    tab.get_by_text("Step by step").first.wait_for(timeout=LONG)
    tab.get_by_text("Text before this step").first.wait_for(timeout=LONG)
    tab.locator("[data-testid='stVegaLiteChart']").first.wait_for(timeout=LONG)
    _settle(tab)
    _shot(tab, out, "generation", anchor=_key("gen_run"))


def journey_finetuner(tab, url: str, out: Path) -> None:
    _open(tab, url, "finetuner")
    tab.get_by_role("tab", name="Side by side").click()
    _select(tab, "ft_example", "Uppercase a line")
    _click(tab, "ft_generate")
    tab.locator("#ft-output-right").wait_for(timeout=LONG)
    tab.locator("#ft-output-left").wait_for(timeout=LONG)
    _settle(tab)
    _shot(tab, out, "finetuner")


def journey_evaluator(tab, url: str, out: Path) -> None:
    _open(tab, url, "evaluator")
    tab.get_by_role("tab", name="Perplexity").click()
    tab.locator(_key("ev_ppl_data")).get_by_text("WikiText-2 test (shipped)").click()
    _settle(tab)
    _number(tab, "ev_ppl_maxtok", 256)
    _click(tab, "ev_ppl_run")
    tab.get_by_text("Bits per byte").first.wait_for(timeout=LONG)
    tab.get_by_text("Recorded in the leaderboard").first.wait_for(timeout=LONG)
    _settle(tab)
    _shot(tab, out, "evaluator")


def journey_inside(tab, url: str, out: Path) -> None:
    """SmolLM2 on a repeated sentence: the Attention tab for the README; every other tab
    (and, when a Lab 2 run with snapshots is saved, its training timeline) goes to
    lab6-<tab>.png in the temporary folder, for review."""
    _open(tab, url, "inside")
    _select(tab, "inside_model", "smollm2-135m-instruct")
    _select(tab, "inside_example", "A sentence, repeated")
    tab.locator(f"{_key('inside_run')} button:not([disabled])").wait_for(timeout=LONG)
    grid = tab.locator("img[title='layer 29, head 8']")
    for _ in range(3):  # a click that lands while the page redraws can be lost: try again
        _settle(tab)
        started = time.time()
        _click(tab, "inside_run")
        try:
            grid.wait_for(timeout=LONG // 3)
            print(f"  the grids {time.time() - started:.1f} s after the click", flush=True)
            break
        except Exception:  # noqa: BLE001 - Playwright's timeout: click once more
            continue
    grid.wait_for(timeout=LONG)
    _number(tab, "inside_attn_layer", 18)  # SmolLM2's strongest induction head
    _number(tab, "inside_attn_head", 6)
    tab.get_by_text("layer 18, head 6").first.wait_for(timeout=LONG)
    tab.get_by_text("looks most at").first.wait_for(timeout=LONG)
    _settle(tab)
    _shot(tab, out, "inside", anchor=_key("inside_run"))
    review = Path(tempfile.gettempdir())
    for name in ("Logit lens", "Head roles", "Ablation", "Embeddings"):
        tab.get_by_role("tab", name=name).click()
        if name == "Head roles":  # the induction probe runs after the prompt
            tab.get_by_text("The induction probe:").first.wait_for(timeout=LONG)
        if name == "Ablation":
            heads = tab.locator(f"{_key('inside_ablate_heads')} input")
            heads.fill("layer 18, head 6")  # the list is long: filter it, take the match
            heads.press("Enter")
            tab.keyboard.press("Escape")
            _settle(tab)
            _click(tab, "inside_ablate_run")
            tab.get_by_text("Loss with the parts knocked out").first.wait_for(timeout=LONG)
        _settle(tab)
        _review_shot(tab, review / f"lab6-{name.lower().replace(' ', '-')}.png")
    runs = tab.locator(f"{_key('inside_model')} [role='combobox']")
    runs.first.click()
    lab2 = tab.locator("[role='option']", has_text="Lab 2 run")
    if lab2.count():  # a saved run: its training timeline
        lab2.first.click()
        _settle(tab)
        tab.get_by_role("tab", name="Training timeline").click()
        tab.locator(f"{_key('inside_timeline_run')} button:not([disabled])").wait_for(timeout=LONG)
        _click(tab, "inside_timeline_run")
        tab.get_by_text("Validation loss").first.wait_for(timeout=LONG)
        _settle(tab)
        _review_shot(tab, review / "lab6-training-timeline.png")
    else:
        tab.keyboard.press("Escape")


def _review_shot(tab, path: Path) -> None:
    """A full-page screenshot of the current state (for looking at, not for the README)."""
    tab.mouse.move(5, 5)
    time.sleep(1.5)
    tab.screenshot(path=str(path), full_page=True)
    print(path, flush=True)


def journey_code(tab, url: str, out: Path) -> None:
    """Lab 1's "How it works in code" opened: the textbook BPE trainer the Train button equals."""
    _open(tab, url, "tokenizer")
    expander = tab.locator("[data-testid='stExpander']", has_text="How it works in code").first
    expander.locator("summary").click()
    expander.get_by_text("def train_simple").first.wait_for()
    _settle(tab)
    tab.locator("[data-testid='stMain']").evaluate("el => el.scrollTo(0, 0)")
    tab.mouse.move(5, 5)
    time.sleep(1.0)
    # from the "Train your own BPE" heading down to the end of the opened expander
    heading = tab.get_by_role("heading", name="Train your own BPE").first.bounding_box()
    box = expander.bounding_box()
    top = max(0, heading["y"] - 24)
    bottom = min(VIEWPORT["height"], box["y"] + box["height"] + 24)
    left, right = max(0, box["x"] - 32), min(VIEWPORT["width"], box["x"] + box["width"] + 32)
    path = out / FILES["code"]
    tab.screenshot(
        path=str(path), clip={"x": left, "y": top, "width": right - left, "height": bottom - top}
    )
    print(path, flush=True)


def run_journeys(url: str, out: Path, names: list[str]) -> int:
    from playwright.sync_api import sync_playwright

    failed = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            for name in names:
                tab = browser.new_page(viewport=VIEWPORT)
                tab.set_default_timeout(60_000)
                started = time.time()
                try:
                    globals()[f"journey_{name}"](tab, url, out)
                    print(f"  {name}: {time.time() - started:.0f} s", flush=True)
                except Exception as exc:  # keep going: one slow page should not cost the others
                    failed.append(name)
                    tab.screenshot(path=str(Path(tempfile.gettempdir()) / f"failed-{name}.png"))
                    print(f"  {name} FAILED after {time.time() - started:.0f} s: {exc}", flush=True)
                finally:
                    tab.close()
        finally:
            browser.close()
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--pages", help="comma-separated page names (default: all)")
    parser.add_argument(
        "--journeys", action="store_true", help="use each lab, then save the README screenshots"
    )
    args = parser.parse_args()
    names = args.pages.split(",") if args.pages else (JOURNEYS if args.journeys else PAGES)
    from playwright.sync_api import sync_playwright

    proc = None
    url = args.url
    if not url:
        proc, url = _start_app()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        if args.journeys:
            return run_journeys(url, out, names)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            for name in names:
                tab.goto(f"{url}/{'' if name == 'home' else name}")
                tab.wait_for_selector("[data-testid='stMain']", timeout=60_000)
                time.sleep(4)  # let the script run finish drawing
                path = out / f"page-{name}.png"
                tab.screenshot(path=str(path), full_page=True)
                print(path)
            browser.close()
    finally:
        if proc:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
