"""Router accuracy and latency on a labelled question set.

    .venv/bin/python benchmarks/router_accuracy.py [--heldout]
The default set (benchmarks/data/route_questions.jsonl) is the one the router's examples and cues were
tuned against. --heldout uses route_questions_heldout.jsonl, written separately from the router (its
writer never saw the router's examples, cues or tuning set), in other styles: that is the number that
says whether the router generalises, and its errors are not printed, so that nobody tunes on them.
Prints accuracy, per-style accuracy, the confusion matrix and latency; writes results/router_accuracy[_heldout].json.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from common import machine, machine_line, read_jsonl, save, summary, table

from assistant.router import Router
from corpus import ROUTES
from index.embed import Embedder

DATA = Path(__file__).parent / "data"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--heldout", action="store_true", help="the held-out set (errors not printed)")
    heldout = parser.parse_args().heldout
    info = machine()
    rows = read_jsonl(DATA / ("route_questions_heldout.jsonl" if heldout else "route_questions.jsonl"))
    router = Router(Embedder())
    router.route("warm-up question about dosing")  # loads the model and the prototypes
    predictions, latencies = [], []
    for row in rows:
        start = time.perf_counter()
        predictions.append(router.route(row["question"]))
        latencies.append(time.perf_counter() - start)
    correct = [p[0] == r["route"] for p, r in zip(predictions, rows)]
    confusion = Counter((r["route"], p[0]) for p, r in zip(predictions, rows))
    by_style = Counter(r["style"] for r in rows)
    style_correct = Counter(r["style"] for r, ok in zip(rows, correct) if ok)

    print(machine_line(info))
    print(f"\naccuracy {sum(correct) / len(rows):.3f} on {len(rows)} questions\n")
    print(table(["true \\ predicted", *ROUTES], [[t, *[confusion[(t, p)] for p in ROUTES]] for t in ROUTES]))
    print()
    print(table(["style", "n", "accuracy"], [[s, n, f"{style_correct[s] / n:.2f}"] for s, n in sorted(by_style.items())]))
    lat = summary(latencies, 1000)
    print(f"\nlatency per question (ms): median {lat['median']}, p95 {lat['p95']}, max {lat['max']}")
    errors = [(r["route"], p[0], round(p[1], 2), r["question"]) for p, r, ok in zip(predictions, rows, correct) if not ok]
    if not heldout:
        print("\nerrors (true, predicted, confidence, question):")
        for e in errors:
            print(" ", e)
    save("router_accuracy_heldout" if heldout else "router_accuracy", {"machine": info, "n": len(rows), "accuracy": sum(correct) / len(rows),
                             "confusion": {f"{t}->{p}": confusion[(t, p)] for t in ROUTES for p in ROUTES},
                             "by_style": {s: style_correct[s] / n for s, n in by_style.items()},
                             # held-out errors are not kept either: nobody should tune on them
                             "latency_ms": lat, "errors": [] if heldout else errors})


if __name__ == "__main__":
    main()
