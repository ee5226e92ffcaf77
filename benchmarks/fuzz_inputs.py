"""Fuzzing the loaders and the chat input with hostile inputs (issue 12): inputs tried, crashes (target 0).

The same strategies and properties as the CI tests (tests/hostile.py), with many more inputs and nothing
stopping at the first failure:
* loaders: hostile files of every supported type (markup, control characters, NUL, invalid UTF-8, huge lines,
  deep nesting; damaged PDFs and DOCX; random bytes), each loaded and chunked with the real MiniLM tokenizer.
  A crash is any exception but LoadError, or a LoadError whose reason is not one printable line.
* chat: hostile questions typed into the real Textual app (headless, over the starter notes, evidence reader),
  each in a new chat; a crash is the app stopping, an answer ending in an error, the question not shown as
  typed, or no answer within 120 s.

    .venv/bin/python benchmarks/fuzz_inputs.py                          # ~15 min on 2 cores
    .venv/bin/python benchmarks/fuzz_inputs.py --files 200 --questions 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

# The strategies live with the tests; the checkout comes first, or the tests' corpus/ folder would hide the package.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import machine, machine_line, save, table  # noqa: E402
from hostile import check_loads_or_refuses, fuzz_chat, hostile_files  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--files", type=int, default=3000, help="hostile files, of all types together")
parser.add_argument("--questions", type=int, default=500, help="hostile questions typed into the chat")
args = parser.parse_args()


def runs(n: int) -> settings:
    """n generated inputs, none replayed from a database or shrunk: every crash is counted, none stops the run."""
    return settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck))


def crash(kind: str, what: str, exc: BaseException) -> dict:
    last = traceback.extract_tb(exc.__traceback__)[-1:] or [None]
    where = f"{last[0].filename}:{last[0].lineno}" if last[0] else ""
    return {"kind": kind, "input": what[:300], "error": f"{type(exc).__name__}: {exc}"[:500], "where": where}


def fuzz_loaders(n: int, tokenize) -> dict:
    outcomes: Counter = Counter()
    slowest: dict[str, float] = {}
    crashes = []

    @runs(n)
    @given(hostile_files)
    def one(case):
        suffix, data = case
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"hostile{suffix}"
            path.write_bytes(data)
            start = time.perf_counter()
            try:
                outcomes[suffix, check_loads_or_refuses(path, tokenize)] += 1
            except Exception as exc:
                outcomes[suffix, "crash"] += 1
                crashes.append(crash(suffix, repr(data[:300]), exc))
            slowest[suffix] = max(slowest.get(suffix, 0.0), time.perf_counter() - start)

    one()
    return {"outcomes": {f"{s} {o}": k for (s, o), k in sorted(outcomes.items())}, "slowest_s": slowest,
            "crashes": crashes}


async def fuzz_questions(n: int, home: Path) -> dict:
    from assistant.config import load_config
    from assistant.tui.app import MedassistApp

    tried, crashes = [], []
    app = MedassistApp(load_config(home, generate="never"))
    async with app.run_test(size=(120, 40)) as pilot:
        def on_crash(question, exc):
            crashes.append(crash("chat", repr(question[:300]), exc))

        def count(question):
            tried.append(len(question))

        await fuzz_chat(app, pilot, runs(n), on_crash=on_crash, on_question=count)
    return {"tried": len(tried), "longest_question_chars": max(tried, default=0), "crashes": crashes}


def main() -> None:
    from index import KnowledgeBase
    from index.embed import Embedder

    info = machine()
    print(machine_line(info))
    embedder = Embedder()
    start = time.perf_counter()
    loaders = fuzz_loaders(args.files, embedder.tokenize)
    loaders["seconds"] = round(time.perf_counter() - start)
    tried = sum(loaders["outcomes"].values())
    print(f"loaders: {tried} files in {loaders['seconds']} s, {len(loaders['crashes'])} crashes")

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        KnowledgeBase(home, embedder=embedder).ensure_starter()
        start = time.perf_counter()
        chat = asyncio.run(fuzz_questions(args.questions, home))
        chat["seconds"] = round(time.perf_counter() - start)
        shutil.rmtree(home, ignore_errors=True)

    by_type = Counter()
    for key, k in loaders["outcomes"].items():
        suffix, outcome = key.split()
        by_type[suffix, outcome] += k
    suffixes = sorted({s for s, _ in by_type})
    rows = [[s, sum(by_type[s, o] for o in ("loaded", "refused", "crash")), by_type[s, "loaded"],
             by_type[s, "refused"], by_type[s, "crash"], f"{loaders['slowest_s'].get(s, 0):.2f}"] for s in suffixes]
    rows.append(["**all files**", tried, sum(r[2] for r in rows), sum(r[3] for r in rows), len(loaders["crashes"]),
                 f"{max(loaders['slowest_s'].values(), default=0):.2f}"])
    rows.append(["**chat questions**", chat["tried"], "", "", len(chat["crashes"]), ""])
    print(table(["input", "tried", "loaded", "refused (LoadError)", "crashes", "slowest file (s)"], rows))
    for c in loaders["crashes"][:20] + chat["crashes"][:20]:
        print(f"CRASH {c['kind']}: {c['error']} at {c['where']}\n    input {c['input'][:200]}")
    save("fuzz_inputs", {"machine": info, "args": vars(args), "loaders": loaders, "chat": chat})


if __name__ == "__main__":
    main()
