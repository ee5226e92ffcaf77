"""`medassist chat` latency with the default model: first paint, model ready, first token, input latency.

* First paint and ready: the real command started in tmux (as a user starts it, Python start-up and
  imports included) with a home where the starter notes are indexed and the model converted; the
  pane is read every 20 ms until the question box appears, then until the status says "ready".
* First token and input latency: the app driven headless through Textual's pilot. For each question:
  Enter to the first streamed text on screen; then, while the answer streams, a key is pressed every
  0.3 s and the time until the question box shows it is recorded.
Also writes docs/img/chat.svg, a screenshot of the last real answer, for the README.

    .venv/bin/python benchmarks/tui_latency.py                   # ~6 min on 2 cores
    .venv/bin/python benchmarks/tui_latency.py --starts 2 --questions 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, machine_line, save, summary, table, wait_for_quiet, warn_if_busy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--starts", type=int, default=5, help="cold starts of `medassist chat` in tmux")
parser.add_argument("--questions", type=int, default=4)
parser.add_argument("--screenshot", type=Path, default=Path(__file__).parent.parent / "docs" / "img" / "chat.svg")
args = parser.parse_args()

QUESTIONS = ["What is the first-line treatment for hypertension?", "How is community-acquired pneumonia treated?",
             "What is the apixaban dose for atrial fibrillation?", "Which tests confirm stress urinary incontinence?",
             "How is sepsis recognised?", "What monitoring does lithium need?"]
MEDASSIST = str(Path(sys.executable).parent / "medassist")


def pane(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def cold_start(home: Path) -> tuple[float, float]:
    """Seconds from launching `medassist chat` to the first paint, and to the model being ready."""
    session = f"medassist-bench-{os.getpid()}"
    start = time.perf_counter()
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "140", "-y", "45",
                    f"env -u COLUMNS -u LINES MEDASSIST_HOME={home} TERM=xterm-256color {MEDASSIST} chat --no-history"], check=True)
    try:
        paint = ready = None
        while ready is None and time.perf_counter() - start < 300:
            screen = pane(session)
            if paint is None and "Ask a medical question" in screen:
                paint = time.perf_counter() - start
            if "ready ·" in screen:
                ready = time.perf_counter() - start
            time.sleep(0.02)
        return paint, ready
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


async def drive(home: Path) -> dict:
    from assistant.config import load_config
    from assistant.tui.app import MedassistApp
    from assistant.tui.widgets.exchange import Exchange
    from textual import events

    app = MedassistApp(load_config(home), keep_history=False)
    first_token, input_latency, tokens_per_s = [], [], []
    async with app.run_test(size=(140, 45)) as pilot:
        while app.agent is None:
            await pilot.pause(0.1)
        box = app.chat.query_one("#question")
        for question in QUESTIONS[:args.questions]:
            box.value = question
            sent = time.perf_counter()
            await pilot.press("enter")
            while not app.chat.query(Exchange) or not (app.chat.query(Exchange).last().reasoning_text
                                                       or app.chat.query(Exchange).last().query_one(".answer").source):
                await pilot.pause(0.01)
            first_token.append(time.perf_counter() - sent)
            while app.chat.busy:
                before = box.value
                pressed = time.perf_counter()
                # Posted as the terminal driver posts a key: pilot.press would also wait for the screen to go
                # idle, which never happens while an answer streams, and so measured its own 2 s timeout.
                app.post_message(events.Key("x", "x"))
                while box.value == before:
                    await asyncio.sleep(0.001)
                input_latency.append(time.perf_counter() - pressed)
                await pilot.pause(0.3)
            box.value = ""
            tokens_per_s.append(app.chat.query_one("StatusBar").tokens_per_s)
        await pilot.press("ctrl+o")  # the screenshot shows the answer and, below, how to open its sources
        await pilot.pause(0.5)
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        app.save_screenshot(str(args.screenshot))
    return {"first_token_s": first_token, "input_latency_ms": [t * 1000 for t in input_latency],
            "tokens_per_s": tokens_per_s}


def main() -> None:
    info = machine()
    print(machine_line(info))
    warn_if_busy(info)
    if not shutil.which("tmux"):
        raise SystemExit("tmux is needed for the cold-start measurement")
    home = Path(tempfile.mkdtemp(prefix="medassist-tui-"))
    from assistant.backends.transformers_backend import resolve_model
    from index import KnowledgeBase

    KnowledgeBase(home).ensure_starter()
    resolve_model(None, home)  # the one-off conversion is not part of a start
    starts = []
    for n in range(args.starts):
        wait_for_quiet(120)
        starts.append(cold_start(home))
        print(f"start {n + 1}: first paint {starts[-1][0]:.2f} s, model ready {starts[-1][1]:.1f} s", flush=True)
    wait_for_quiet(120)
    driven = asyncio.run(drive(home))
    paint, ready = summary([s[0] for s in starts]), summary([s[1] for s in starts])
    first, keys = summary(driven["first_token_s"]), summary(driven["input_latency_ms"])
    print(f"\n{machine_line(info)}")
    print(table(["measure", "p50", "p95", "max", "n"], [
        ["first paint (s), `medassist chat` in tmux", paint["median"], paint["p95"], paint["max"], paint["n"]],
        ["model ready (s)", ready["median"], ready["p95"], ready["max"], ready["n"]],
        ["Enter to first token on screen (s)", first["median"], first["p95"], first["max"], first["n"]],
        ["key press to screen while streaming (ms)", keys["median"], keys["p95"], keys["max"], keys["n"]],
    ]))
    print(f"tokens/s shown in the status line: {[round(t, 1) for t in driven['tokens_per_s']]}")
    print(f"screenshot: {args.screenshot}")
    save("tui_latency", {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                         "first_paint_s": paint, "ready_s": ready, "first_token_s": first,
                         "input_latency_ms": keys, "tokens_per_s": driven["tokens_per_s"]})


if __name__ == "__main__":
    main()
