"""Chart of `benchmarks/eval_gpu.py --scoring loglik` results: acc and acc_norm per dataset and configuration,
95% Wilson intervals as error bars, the random-guess baseline as a black tick over each group and, given the
question files, the always-the-first-option baseline as a dashed one (a small model leans to the first option).

    python benchmarks/eval_loglik_chart.py benchmarks/results/eval_gpu_loglik.json docs/img/eval_loglik_gpu.png \
        ../shared/data/mirage_benchmark.jsonl ../shared/data/medqa_usmle_4opt_test.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(summaries: list[dict]) -> tuple[list[str], list[str], dict]:
    """Datasets (MIRAGE's five, then any other file), configuration labels, (label, dataset) -> summary row."""
    table, labels, datasets = {}, [], []
    for summary in summaries:
        labels += [summary["label"]] if summary["label"] not in labels else []
        for name, row in summary["datasets"].items():
            if name == "all" and summary["file"].startswith("mirage"):
                continue
            name = summary["file"] if name == "all" else name
            datasets += [name] if name not in datasets else []
            table[(summary["label"], name)] = row
    return datasets, labels, table


def first_option_share(paths: list[str]) -> dict[str, float]:
    """Per dataset (and per file, under its stem), the share of questions whose answer is the first option."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from assistant.evaluation import load_mcq

    groups: dict[str, list[bool]] = {}
    for path in paths:
        for item in load_mcq(path):
            first = item.answer == next(iter(item.options))
            groups.setdefault(item.dataset, []).append(first)
            if item.dataset != Path(path).stem:
                groups.setdefault(Path(path).stem, []).append(first)
    return {name: sum(flags) / len(flags) for name, flags in groups.items()}


def chart(summaries: list[dict], out: Path, title: str, first: dict[str, float] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets, labels, table = rows(summaries)
    width = 0.8 / len(labels)
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.2), sharey=True)
    for axis, (metric, interval) in zip(axes, [("accuracy", "ci95"), ("accuracy_norm", "ci95_norm")]):
        for i, label in enumerate(labels):
            xs = [d + (i - (len(labels) - 1) / 2) * width for d in range(len(datasets))]
            got = [table.get((label, name)) for name in datasets]
            values = [r[metric] if r else 0 for r in got]
            errors = [[r[metric] - r[interval][0] if r else 0 for r in got],
                      [r[interval][1] - r[metric] if r else 0 for r in got]]
            axis.bar(xs, values, width, yerr=errors, capsize=2, label=label)
        for d, name in enumerate(datasets):
            baseline = next(table[(label, name)]["random_baseline"] for label in labels if (label, name) in table)
            axis.hlines(baseline, d - 0.45, d + 0.45, colors="black", linewidth=1.5)
            if first and name in first:
                axis.hlines(first[name], d - 0.45, d + 0.45, colors="dimgray", linewidth=1.5, linestyles="dashed")
        axis.set_xticks(range(len(datasets)), [name.replace("_usmle_4opt_test", " file") for name in datasets],
                        rotation=15)
        axis.set_title(f"{'acc' if metric == 'accuracy' else 'acc_norm (per character)'}")
        axis.set_ylim(0, 1)
        axis.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("accuracy (95% Wilson)\nblack: random guess; dashed: always the first option", fontsize=9)
    axes[1].legend(fontsize=8, loc="upper right")
    figure.suptitle(title)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    source, target, data = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    summaries = json.loads(source.read_text())
    card = summaries[0].get("machine", {}).get("device", "one H200")  # runs before 2026-12-06 did not record it
    files = {s["file"]: s["datasets"]["all"]["n"] for s in summaries}
    asked = " and ".join(f"{n:,} {'MIRAGE' if name.startswith('mirage') else 'MedQA'}" for name, n in files.items())
    chart(summaries, target, f"Gemma-3-270M on {card}: {asked} questions, scored by log-likelihood",
          first_option_share(data) if data else None)
