"""Where should the agent abstain? Best passage relevance for on-topic vs off-topic questions.

    .venv/bin/python benchmarks/abstention_calibration.py [--home DIR]
On-topic: the labelled router questions (medical; many are covered by the starter notes, some are
not). Off-topic: benchmarks/data/off_topic_questions.txt. For each threshold: the share of
off-topic questions that abstain and of medical questions that still get an answer.
The chosen value is assistant/agent.py's MIN_RELEVANCE.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from common import machine, machine_line, read_jsonl, save, table

from index import KnowledgeBase

HERE = Path(__file__).parent


def best_relevance(kb, question: str) -> float:
    return max((p.dense_score or 0.0 for p in kb.search(question, k=5)), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", help="a home that already holds the starter notes (default: build one)")
    args = parser.parse_args()
    info = machine()
    kb = KnowledgeBase(args.home or tempfile.mkdtemp(prefix="medassist-abstain-"))
    kb.ensure_starter()
    medical = [r["question"] for r in read_jsonl(HERE / "data" / "route_questions.jsonl")]
    off_topic = [q for q in (HERE / "data" / "off_topic_questions.txt").read_text().splitlines() if q.strip()]
    on = np.array([best_relevance(kb, q) for q in medical])
    off = np.array([best_relevance(kb, q) for q in off_topic])
    rows = []
    for threshold in np.arange(0.20, 0.56, 0.05):
        rows.append([f"{threshold:.2f}", f"{(off < threshold).mean():.2f}", f"{(on >= threshold).mean():.2f}"])
    print(machine_line(info))
    print(f"\nbest dense relevance: medical median {np.median(on):.2f} (p5 {np.percentile(on, 5):.2f}), "
          f"off-topic median {np.median(off):.2f} (p95 {np.percentile(off, 95):.2f})\n")
    print(table(["threshold", "off-topic abstained", "medical answered"], rows))
    save("abstention_calibration", {"machine": info, "medical": on.round(3).tolist(), "off_topic": off.round(3).tolist(),
                                    "sweep": rows})


if __name__ == "__main__":
    main()
