"""Answers over the starter notes with the default model: grounding, abstention, fallback, latency.

    .venv/bin/python benchmarks/answer_quality.py [--limit 20] [--home DIR]
For medical questions from benchmarks/data/route_questions.jsonl (every n-th, to mix routes and
styles): the share of generated answer sentences the grounding check supports, how often the
extractive fallback replaced the generated answer, how often the agent abstained, and the time per
stage (model load, first token, tokens/s, end-to-end). Writes results/answer_quality.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import machine, machine_line, read_jsonl, save, summary, table

from assistant.agent import Agent
from assistant.backends import load_backend
from index import KnowledgeBase

HERE = Path(__file__).parent


class Timed:
    """Wraps a backend to time the first streamed piece and count generated tokens."""

    def __init__(self, backend):
        self.inner, self.name, self.model_name, self.eos_token = backend, backend.name, backend.model_name, backend.eos_token
        self.first_token_s: list[float] = []
        self.tokens_per_s: list[float] = []

    def generate(self, prompt, settings, stop=None, cancel=None):
        start, text, first = time.perf_counter(), "", None
        for piece in self.inner.generate(prompt, settings, stop=stop, cancel=cancel):
            first = first or time.perf_counter() - start
            text += piece
            yield piece
        if first is not None:
            self.first_token_s.append(first)
            self.tokens_per_s.append(self.inner.count_tokens(text) / (time.perf_counter() - start))


class RecordingAgent(Agent):
    """Keeps the check of the generated text, which the extractive fallback would otherwise replace."""

    checked: list = []

    def _check(self, text, citations):
        answer, checks = super()._check(text, citations)
        RecordingAgent.checked.append(checks)
        return answer, checks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--home", help="a home with the starter notes and the converted model (default: new)")
    args = parser.parse_args()
    info = machine()
    home = Path(args.home or tempfile.mkdtemp(prefix="medassist-answers-"))
    kb = KnowledgeBase(home)
    kb.ensure_starter()
    start = time.perf_counter()
    backend = Timed(load_backend("transformers", home=home))
    load_s = time.perf_counter() - start
    questions = read_jsonl(HERE / "data" / "route_questions.jsonl")
    questions = questions[:: max(1, len(questions) // args.limit)][: args.limit]

    modes, totals, final_supported = [], [], []
    for n, row in enumerate(questions, start=1):
        answer = RecordingAgent(kb, lambda: backend).ask(row["question"])
        modes.append(answer.mode)
        totals.append(answer.timings["total_s"])
        if answer.mode != "abstained":
            final_supported.append(any(s.supported for s in answer.sentences))
        print(f"[{n}/{len(questions)}] {answer.mode:<10} {answer.timings['total_s']:6.1f} s  {row['question'][:70]}")
    generated_checks = [(sum(c.supported for c in checks), len(checks)) for checks in RecordingAgent.checked]

    answered = [m for m in modes if m != "abstained"]
    supported = sum(s for s, _ in generated_checks)
    sentences = sum(t for _, t in generated_checks)
    print(f"\n{machine_line(info)}\n")
    print(table(["measure", "value"], [
        ["questions", len(modes)],
        ["abstained", f"{modes.count('abstained') / len(modes):.2f}"],
        ["answered from generated text (with fallback on)", f"{modes.count('generated') / max(1, len(answered)):.2f}"],
        ["answered by the extractive fallback", f"{modes.count('extractive') / max(1, len(answered)):.2f}"],
        ["generated sentences supported (fallback off)", f"{supported}/{sentences}"],
        ["answers with at least one supported sentence (fallback off)",
         f"{sum(s > 0 for s, _ in generated_checks)}/{len(generated_checks)}"],
        ["answers with a supported sentence (fallback on)", f"{sum(final_supported)}/{len(final_supported)}"],
        ["model load (s)", f"{load_s:.1f}"],
        ["time to first token (s), median", summary(backend.first_token_s)["median"]],
        ["tokens/s, median", summary(backend.tokens_per_s)["median"]],
        ["end-to-end ask (s) p50 / p95", f"{summary(totals)['median']} / {summary(totals)['p95']}"],
    ]))
    save("answer_quality", {"machine": info, "modes": modes, "load_s": load_s, "totals_s": summary(totals),
                            "first_token_s": summary(backend.first_token_s),
                            "tokens_per_s": summary(backend.tokens_per_s),
                            "generated_supported": [supported, sentences]})


if __name__ == "__main__":
    main()
