"""`medassist eval mcq --scoring loglik` against lm-evaluation-harness: same model, same questions, same prompt.

lm-eval (`pip install -e '.[benchmark]'`) reads a temporary copy of the questions through a task YAML written
here (`dataset_path: json`, `output_type: multiple_choice`); its prompt is a Jinja template over the raw
fields, so lm-eval builds the text itself, and every context it logged is compared with ours. Then, per
question: do both choose the same option (acc and acc_norm), and how far apart are the log-likelihoods.

    python benchmarks/lmeval_crosscheck.py --model ~/.local/share/medassist/models/gemma-3-270m \
        --data ../shared/data/medqa_usmle_4opt_test.jsonl --limit 200 --out benchmarks/results/lmeval_crosscheck.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local folder and the data a local JSONL
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from assistant.evaluation import RunConfig, load_mcq, run_mcq, sample_items, wilson  # noqa: E402
from assistant.loglik import loglik_prompt  # noqa: E402
from finetune.prompt import INSTRUCTION, MCQ_TEXT_RULES, PREAMBLE  # noqa: E402

TASK = "medassist_mcq_loglik"
# Our prompt (assistant/loglik.py) written as lm-eval renders a prompt: Jinja over the row's fields.
TEMPLATE = "\n".join([PREAMBLE, "", "### Instruction:", INSTRUCTION, "", "### Question:", "{{ question | trim }}", "",
                      "Options:", "{% for c in choices %}{{ 'ABCDEFGHIJ'[loop.index0] }}. {{ c }}\n{% endfor %}",
                      MCQ_TEXT_RULES, "", "### Response:", "<think>", "", "</think>", "Answer:"])


def write_task(items, folder: Path) -> Path:
    """The questions as lm-eval reads them (choices: the option texts; gold: the answer's index) and the task."""
    import yaml

    data = folder / "questions.jsonl"
    with open(data, "w", encoding="utf-8") as handle:
        for item in items:
            choices = [text.strip() for text in item.options.values()]
            handle.write(json.dumps({"id": item.id, "question": item.question, "options": item.options,
                                     "answer_idx": item.answer, "choices": choices,
                                     "gold": list(item.options).index(item.answer)}) + "\n")
    task = {"task": TASK, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test", "output_type": "multiple_choice", "doc_to_text": TEMPLATE,
            "doc_to_choice": "choices", "doc_to_target": "gold", "target_delimiter": " ",
            "metric_list": [{"metric": metric, "aggregation": "mean", "higher_is_better": True}
                            for metric in ("acc", "acc_norm")]}
    (folder / f"{TASK}.yaml").write_text(yaml.safe_dump(task, sort_keys=False), encoding="utf-8")
    return data


def dtype_name(requested: str) -> str:
    """What our TransformersBackend loads (index/compute.py: bf16 on a GPU or a CPU with bf16 matrix units, else
    fp32), unless asked otherwise."""
    from index.compute import choose_compute

    return requested if requested != "auto" else choose_compute("auto").dtype


def run_lm_eval(model: str, folder: Path, batch_size: int, dtype: str) -> tuple[dict, list[dict], float]:
    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager

    started = time.perf_counter()
    out = lm_eval.simple_evaluate(
        model="hf", tasks=[TASK], task_manager=TaskManager(include_path=str(folder)), batch_size=batch_size,
        model_args={"pretrained": model, "dtype": dtype_name(dtype)},
        device="cuda" if torch.cuda.is_available() else "cpu", log_samples=True)
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    return out["results"][TASK], samples, time.perf_counter() - started


def run_ours(model: str, data: Path, folder: Path, batch_size: int, dtype: str) -> tuple[list[dict], float]:
    import torch

    from assistant.backends.base import GenerationSettings
    from assistant.backends.transformers_backend import TransformersBackend

    started = time.perf_counter()
    backend = TransformersBackend(model=model, home=folder / "home")
    if backend.model.dtype != getattr(torch, dtype_name(dtype)):
        from transformers import AutoModelForCausalLM

        # Loaded again in that dtype rather than cast: Gemma's embedding scale is a buffer made in the load
        # dtype, and a bf16-made sqrt(640) cast to float32 is 25.25, not 25.298 (lm-eval loads in float32).
        backend.model = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype_name(dtype))).to(
            backend.model.device).eval()
    items = load_mcq(data)
    run = RunConfig(model=backend.model_name, backend=backend.name, adapter=None, use_rag=False, k=0, index=None,
                    settings={}, scoring="loglik")
    run_mcq(items, backend, GenerationSettings(), folder / "ours", run, batch_size=batch_size)
    records = {r["id"]: r for r in map(json.loads, (folder / "ours" / "answers.jsonl").read_text().splitlines())}
    return [records[item.id] for item in items], time.perf_counter() - started


def interval(correct: int, n: int) -> dict:
    return {"value": round(correct / n, 4), "correct": correct, "ci95": [round(x, 4) for x in wilson(correct, n)]}


def compare(items, ours: list[dict], samples: list[dict]) -> dict:
    """Per question: the same context, the same choices, and how far the log-likelihoods are apart."""
    n = len(items)
    same_context = sum(s["arguments"][0][0] == loglik_prompt(i.question, i.options) for i, s in zip(items, samples))
    diffs, same_acc, same_norm, apart = [], 0, 0, []
    for item, mine, theirs in zip(items, ours, samples):
        import numpy as np

        lls = np.array([float(resp[0][0]) for resp in theirs["resps"]])
        lengths = np.array([float(len(choice)) for choice in theirs["doc"]["choices"]])
        letters = list(item.options)
        gaps = [abs(a - b) for a, b in zip(mine["logliks"], lls)]
        diffs += [float(gap) for gap in gaps]
        # the option each side chose, not only right or wrong (lm-eval's own argmax, as its process_results)
        same_acc += mine["predicted"] == letters[int(np.argmax(lls))]
        same_norm += mine["predicted_norm"] == letters[int(np.argmax(lls / lengths))]
        if mine["predicted"] != letters[int(np.argmax(lls))] or not max(gaps) < 0.5:  # NaN counts as apart
            apart.append({"id": item.id, "ours": mine["logliks"], "lm_eval": [round(x, 5) for x in lls],
                          "prompt_chars": len(theirs["arguments"][0][0])})
    ours_acc, ours_norm = sum(r["correct"] for r in ours), sum(r["correct_norm"] for r in ours)
    lm_acc = round(sum(s["acc"] for s in samples)), round(sum(s["acc_norm"] for s in samples))
    diffs.sort(key=lambda d: (d != d, d))  # NaN last
    return {"questions": n, "same_context": same_context,
            "ours": {"acc": interval(ours_acc, n), "acc_norm": interval(ours_norm, n)},
            "lm_eval": {"acc": interval(lm_acc[0], n), "acc_norm": interval(lm_acc[1], n)},
            "per_question_agreement": {"acc": round(same_acc / n, 4), "acc_norm": round(same_norm / n, 4)},
            "loglik_abs_diff": {"median": round(diffs[len(diffs) // 2], 6), "max": round(diffs[-1], 6),
                                "not_a_number": int(sum(d != d for d in diffs))},
            "apart": apart}  # the questions choosing differently (raw) or more than 0.5 nats apart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Transformers model folder (e.g. the converted Gemma-3-270M)")
    parser.add_argument("--data", required=True, help="multiple-choice JSONL (MedQA or MIRAGE shape)")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="both sides; auto: what medassist loads models in here (index/compute.py)")
    parser.add_argument("--out", required=True, help="results JSON")
    args = parser.parse_args()

    items = sample_items(load_mcq(args.data), args.limit, args.seed)
    with tempfile.TemporaryDirectory(prefix="lmeval-crosscheck-") as tmp:
        folder = Path(tmp)
        data = write_task(items, folder)
        print(f"{len(items)} questions from {args.data}; lm-eval task in {folder}", flush=True)
        ours, ours_s = run_ours(args.model, data, folder, args.batch_size, args.dtype)
        print(f"ours: {ours_s:.0f} s", flush=True)
        lm_results, samples, lm_s = run_lm_eval(args.model, folder, args.batch_size, args.dtype)
        print(f"lm-eval: {lm_s:.0f} s", flush=True)
    import lm_eval
    import torch
    import transformers

    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
              "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{os.cpu_count()}",
              "lm_eval_version": lm_eval.__version__, "transformers": transformers.__version__,
              "torch": torch.__version__,
              "model": args.model, "data": args.data, "seed": args.seed, "batch_size": args.batch_size,
              "dtype": dtype_name(args.dtype),
              "seconds": {"ours": round(ours_s, 1), "lm_eval": round(lm_s, 1)},
              "lm_eval_reported": {k: v for k, v in lm_results.items() if k != "alias"},
              **compare(items, ours, samples)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print("| | acc [95% Wilson] | acc_norm [95% Wilson] |\n|---|---|---|")
    for side in ("ours", "lm_eval"):
        cells = [f"{result[side][m]['value']:.3f} [{result[side][m]['ci95'][0]:.3f}–{result[side][m]['ci95'][1]:.3f}]"
                 for m in ("acc", "acc_norm")]
        print(f"| {side} | {' | '.join(cells)} |")
    agree = result["per_question_agreement"]
    print(f"same context {result['same_context']}/{len(items)}; same choice: acc {agree['acc']:.3f}, acc_norm "
          f"{agree['acc_norm']:.3f}; |loglik difference| median {result['loglik_abs_diff']['median']:.2e}, "
          f"max {result['loglik_abs_diff']['max']:.2e}")


if __name__ == "__main__":
    main()
