"""Judge and fit the evidence reader's feature weights (assistant/evidence.py WEIGHTS) on the dev half of the
answer set.

The reader scores each quotable unit of the retrieved passages as a weighted sum of its features (dense
similarity, lexical overlap, question type, subject, retrieval rank, a value in the unit's band). The weights
are set by hand; here they are judged and learned: every dev question is asked as the agent asks it (route,
retrieval, the same units and features), a unit is a positive when its quoted form matches one of the
question's fact regexes, and a pairwise logistic regression (each positive against each negative of the same
question; RankNet with a linear scorer) finds the weights that rank positives first. Our own code, in numpy:
the problem is six numbers.

It prints how often the best unit holds the fact and how often the quotes the reader would show do (the
benchmark's fact measure before abstention): for the current weights, for other values of one of them
(--sweep), and for the fitted ones under 10-fold cross-validation by question (the honest estimate), then
fitted on all of dev. The test half is never read.

    .venv/bin/python benchmarks/evidence_weights.py --home HOME [--sweep in_range=0,0.1,0.2,0.3] [--misses]

HOME holds the starter notes indexed (any home where `medassist chat` has run once).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from answer_quality import has_fact, plain  # noqa: E402
from common import read_jsonl  # noqa: E402

from assistant.agent import Agent  # noqa: E402
from assistant.evidence import FEATURES, WEIGHTS, _figure_after, _with_figure  # noqa: E402

HERE = Path(__file__).parent


def collect(agent: Agent, rows: list[dict]) -> list[dict]:
    """Per answerable question: its units' features, which are about another drug, which hold the fact, and
    what `quotes()` needs to choose from them."""
    reader, calls = agent.reader, []
    scored = reader.scored
    reader.scored = lambda question, passages, skip=lambda t: False, rare_words=frozenset(): (
        calls.append((question, passages, skip, rare_words)) or scored(question, passages, skip, rare_words))
    items = []
    for number, row in enumerate(rows, start=1):
        calls.clear()
        agent.ask(row["question"])
        if not calls:  # abstained before reading (nothing relevant retrieved)
            continue
        question, passages, skip, rare = calls[0]
        units = reader.candidates(passages, skip)
        if not units:
            continue
        features, wrong = reader.features(question, units, {p[0]: r for r, p in enumerate(passages)}, rare)
        labels = np.array([has_fact(row["facts"], plain(f"{u.about}: {_with_figure(u, _figure_after(u, units))}"))
                           for u in units])
        items.append({"id": row["id"], "facts": row["facts"], "question": question, "rare": rare, "units": units,
                      "x": features,
                      "wrong": wrong, "y": labels})
        print(f"\r{number}/{len(rows)} questions read", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return items


def fit(items: list[dict], l2: float = 0.01, steps: int = 3000, rate: float = 0.5) -> np.ndarray:
    """Weights minimising the pairwise logistic loss (positive unit over negative unit, same question), each
    question weighted equally."""
    pairs = []
    for item in items:
        ok = ~item["wrong"]
        pos, neg = item["x"][item["y"] & ok], item["x"][~item["y"] & ok]
        if len(pos) and len(neg):
            diff = (pos[:, None, :] - neg[None, :, :]).reshape(-1, pos.shape[1])
            pairs.append((diff, 1.0 / len(diff)))
    diffs = np.concatenate([d for d, _ in pairs])
    share = np.concatenate([np.full(len(d), w) for d, w in pairs]) / len(pairs)
    w = np.array([WEIGHTS[name] for name in FEATURES], dtype=np.float64)
    for _ in range(steps):
        margin = diffs @ w
        grad = -(diffs * (share / (1 + np.exp(margin)))[:, None]).sum(0) + l2 * w
        w -= rate * grad
    # The same total as the hand-set weights: the quotes' window (CLOSE_TO_BEST) is in score units.
    return w * sum(WEIGHTS.values()) / w.sum()


def judge(agent: Agent, items: list[dict], w: np.ndarray) -> tuple[int, int]:
    """(questions whose best unit holds the fact, questions whose quotes hold it) with weights `w`."""
    top = quoted = 0
    for item in items:
        scores, holds_fact = read(agent, item, w)
        top += bool(item["y"][int(np.argmax(scores))])
        quoted += holds_fact
    return top, quoted


def read(agent: Agent, item: dict, w: np.ndarray) -> tuple[np.ndarray, bool]:
    """The question's unit scores with weights `w`, and whether the quotes the reader then shows hold the fact."""
    scores = item["x"] @ w
    scores[item["wrong"]] = -np.inf
    quotes = agent.reader.quotes(item["question"], list(zip(item["units"], scores.tolist())), rare_words=item["rare"])
    return scores, has_fact(item["facts"], plain(" ".join(f"{q.about}: {q.text}" for q in quotes)))


def show_misses(agent: Agent, items: list[dict], w: np.ndarray) -> None:
    """The questions whose quotes lack the fact: where the first unit holding it ranks, and its features
    against the best unit's."""
    for item in items:
        scores, holds_fact = read(agent, item, w)
        if holds_fact:
            continue
        order = [int(i) for i in np.argsort(-scores)]
        ranks = [r for r, i in enumerate(order) if item["y"][i]]
        print(f"{item['id']} {item['question'][:80]}")
        for label, i in (("best", order[0]), ("fact", order[ranks[0]] if ranks else None)):
            if i is not None:
                unit = item["units"][i]
                print(f"    {label} (rank {order.index(i)}, {scores[i]:.3f}): {unit.about}: {unit.text[:90]} "
                      f"{dict(zip(FEATURES, item['x'][i].round(2).tolist()))}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", required=True, help="a home with the starter notes indexed")
    parser.add_argument("--split", choices=["dev", "fresh"], default="dev", help="dev or fresh: the sets tuned on")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--sweep", metavar="FEATURE=W1,W2,...", help="also judge these weights of one feature")
    parser.add_argument("--misses", action="store_true", help="print the questions whose quotes lack the fact")
    args = parser.parse_args()
    from assistant.config import load_config

    config = load_config(Path(args.home))
    agent = Agent(config.knowledge_base(), None, k=config.k)
    rows = [r for r in read_jsonl(HERE / "data" / "answer_questions.jsonl")
            if r["split"] == args.split and r["kind"] == "clinical"]
    items = collect(agent, rows)
    current = np.array([WEIGHTS[name] for name in FEATURES])
    print(f"{len(items)} questions, {sum(int(i['y'].any()) for i in items)} with the fact in a retrieved unit")
    print(f"current {dict(zip(FEATURES, current.round(3).tolist()))}: best unit / quotes hold the fact "
          f"{judge(agent, items, current)}")
    if args.sweep:
        name, values = args.sweep.split("=")
        for value in values.split(","):
            w = current.copy()
            w[FEATURES.index(name)] = float(value)
            print(f"  {name} = {value}: {judge(agent, items, w)}")
    if args.misses:
        show_misses(agent, items, current)
    rng = np.random.default_rng(0)
    fold = rng.permutation(len(items)) % args.folds
    top = quoted = 0
    for k in range(args.folds):
        w = fit([i for i, f in zip(items, fold) if f != k])
        t, q = judge(agent, [i for i, f in zip(items, fold) if f == k], w)
        top, quoted = top + t, quoted + q
    print(f"fitted, {args.folds}-fold cross-validated: best unit / quotes hold the fact ({top}, {quoted})")
    w = fit(items)
    print(f"fitted on all {args.split}: {dict(zip(FEATURES, w.round(3).tolist()))}: {judge(agent, items, w)}")


if __name__ == "__main__":
    main()

