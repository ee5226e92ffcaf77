"""Calibrate the grounding check's similarity threshold on labelled sentence-passage pairs.

    .venv/bin/python benchmarks/grounding_calibration.py
Sweeps the threshold, prints accuracy and the precision/recall of "supported" per threshold and per
kind of pair, and writes results/grounding_calibration.json. The best threshold goes into
assistant/grounding.py (SUPPORT_THRESHOLD).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from common import machine, machine_line, read_jsonl, save, table

from assistant.grounding import GroundingChecker
from index.embed import Embedder

PAIRS = Path(__file__).parent / "data" / "grounding_pairs.jsonl"


def main() -> None:
    info = machine()
    pairs = read_jsonl(PAIRS)
    checker = GroundingChecker(Embedder(), threshold=-1.0)  # threshold applied below, per sweep value
    results = [checker.check(p["sentence"], [p["passage"]]) for p in pairs]
    labels = np.array([p["supported"] for p in pairs])
    scores = np.array([r.score for r in results])
    rule_ok = np.array([r.supported for r in results])  # numbers and polarity passed

    rows, best = [], (0.0, 0.0)
    for threshold in np.arange(0.40, 0.86, 0.02):
        predicted = rule_ok & (scores >= threshold)
        accuracy = float((predicted == labels).mean())
        precision = float(labels[predicted].mean()) if predicted.any() else 0.0
        recall = float(predicted[labels].mean())
        rows.append([f"{threshold:.2f}", f"{accuracy:.3f}", f"{precision:.3f}", f"{recall:.3f}"])
        best = max(best, (accuracy, float(threshold)))
    print(machine_line(info))
    print(f"\n{len(pairs)} pairs ({labels.sum()} supported)\n")
    print(table(["threshold", "accuracy", "precision(supported)", "recall(supported)"], rows))
    accuracy, threshold = best
    predicted = rule_ok & (scores >= threshold)
    kinds = Counter(p["kind"] for p in pairs)
    right = Counter(p["kind"] for p, ok in zip(pairs, predicted == labels) if ok)
    print(f"\nbest threshold {threshold:.2f}: accuracy {accuracy:.3f}\n")
    print(table(["kind", "n", "accuracy"], [[k, n, f"{right[k] / n:.2f}"] for k, n in sorted(kinds.items())]))
    save("grounding_calibration", {"machine": info, "n": len(pairs), "best_threshold": round(threshold, 2),
                                   "best_accuracy": accuracy, "sweep": rows,
                                   "by_kind": {k: right[k] / n for k, n in kinds.items()}})


if __name__ == "__main__":
    main()
