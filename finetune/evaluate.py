"""Model-level evaluation: eval loss on held-out rows, base vs fine-tuned answers side by side, and the
post-training smoke check (does the tuned model close </think> and stop?).

One model is loaded; the base answers come from the same weights with the adapter switched off
(`disable_adapter`), so the comparison costs one load and the two sides differ only by the adapter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from finetune.config import FinetuneConfig, FinetuneError, load_config
from finetune.data import DataReport, Example, clean, read_rows, tokenize
from finetune.prompt import THINK_CLOSE, build_prompt, build_training_text, split_reasoning

# The same for both sides; a mild penalty keeps small models out of the loops that greedy decoding invites.
REPETITION_PENALTY = 1.1


@dataclass
class Comparison:
    base_model: str
    adapter: str
    data: str
    examples: list[Example]
    base_answers: list[str]
    tuned_answers: list[str]
    base_loss: float
    tuned_loss: float
    max_new_tokens: int

    def markdown(self) -> str:
        lines = [f"# Base vs fine-tuned: {len(self.examples)} held-out questions", "",
                 f"Base model `{self.base_model}`, adapter `{self.adapter}`, data `{self.data}`; greedy decoding "
                 f"(repetition penalty {REPETITION_PENALTY}), at most {self.max_new_tokens} new tokens.", "",
                 "| | base | fine-tuned |", "|---|---|---|",
                 f"| eval loss on these rows (nats/token) | {self.base_loss:.4f} | {self.tuned_loss:.4f} |", ""]
        for n, (example, base, tuned) in enumerate(zip(self.examples, self.base_answers, self.tuned_answers), 1):
            (base_reasoning, base_answer), (tuned_reasoning, tuned_answer) = split_reasoning(base), split_reasoning(tuned)
            lines += [f"## {n}. {' '.join(example.question.split())}", "",
                      f"**Reference answer:** {_cell(example.answer)}", "",
                      "| | base | fine-tuned |", "|---|---|---|",
                      f"| reasoning | {_cell(base_reasoning)} | {_cell(tuned_reasoning)} |",
                      f"| answer | {_cell(base_answer)} | {_cell(tuned_answer)} |", ""]
        return "\n".join(lines)


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    return (text.strip().replace("|", "\\|").replace("\r", "").replace("\n", "<br>")) or "*(empty)*"


def eval_loss(model, tokenizer, rows: list[dict], batch_size: int = 4, completion_only: bool = False) -> float:
    """Mean cross-entropy per predicted token (nats) over tokenized rows (finetune.data.tokenize)."""
    import torch

    total, count = 0.0, 0
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            n = len(row["input_ids"])
            ids[i, :n] = torch.tensor(row["input_ids"])
            mask[i, :n] = 1
            keep = torch.tensor(row["completion_mask"], dtype=torch.bool) if completion_only else torch.ones(n, dtype=torch.bool)
            labels[i, :n] = torch.where(keep, ids[i, :n], -100)
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        targets = labels[:, 1:].to(device)
        losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=-100,
                                                   reduction="sum")
        total += float(losses)
        count += int((targets != -100).sum())
    return total / max(count, 1)


@dataclass(frozen=True)
class Generation:
    text: str  # decoded up to the end-of-sequence token, special tokens dropped
    new_tokens: int  # generated tokens before the end-of-sequence token (all of them when it never came)
    stopped: bool  # ended with an end-of-sequence token, not by running into max_new_tokens


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 256, batch_size: int = 4,
             progress: Callable[[int, int], None] | None = None) -> list[Generation]:
    """Greedy continuations of `prompts`, batched with left padding; `progress(done, total)` after each batch."""
    import torch

    device = next(model.parameters()).device
    # Stop on the EOS that training appended (the tokenizer's) as well as on those the model's config names.
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = {tokenizer.eos_token_id, *(configured if isinstance(configured, list) else [configured])} - {None}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    results: list[Generation] = []
    for start in range(0, len(prompts), batch_size):
        # Left padding: every row's next token is then in the last column, where generation continues.
        inputs = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                           padding_side="left").to(device)
        with torch.inference_mode():
            # use_cache: training may have switched the KV cache off (gradient checkpointing); without it
            # every new token re-reads the whole sequence.
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                 repetition_penalty=REPETITION_PENALTY, eos_token_id=sorted(eos), pad_token_id=pad)
        for row in out[:, inputs["input_ids"].shape[1]:].tolist():
            end = next((i for i, token in enumerate(row) if token in eos), None)
            kept = row if end is None else row[:end]
            results.append(Generation(tokenizer.decode(kept, skip_special_tokens=True), len(kept), end is not None))
        if progress:
            progress(len(results), len(prompts))
    return results


def generate_answers(model, tokenizer, questions: list[str], max_new_tokens: int = 256,
                     batch_size: int = 4) -> list[str]:
    """Greedy continuations of build_prompt(question) (which already opens <think>)."""
    prompts = [build_prompt(q) for q in questions]
    return [g.text for g in generate(model, tokenizer, prompts, max_new_tokens, batch_size)]


# The post-training smoke check. 16 prompts: enough that "none stopped" is not bad luck, few enough for about a
# minute on a GPU (two batches of 8). A generation-only batch keeps one position's logits per row, so it can be
# wider than eval.batch_size, which is sized for full-sequence logits.
SMOKE_PROMPTS = 16
SMOKE_BATCH_SIZE = 8
# medical-o1 reference completions run ~550 tokens (median; ~4 % fit in 384): a lower cap would leave a good
# model no room to stop, and the check would cry wolf on every real run.
SMOKE_MAX_NEW_TOKENS = 1024


@dataclass
class SmokeCheck:
    """How the tuned model's greedy generations on held-out prompts end. Shares are in [0, 1]."""

    prompts: int
    max_new_tokens: int  # the budget: 2x the longest reference completion of these prompts, capped
    longest_target: int  # tokens of that reference completion (reasoning, </think>, answer, EOS)
    closed_think: float  # share that wrote </think>
    stopped: float  # share that ended with EOS before max_new_tokens
    mean_tokens: float
    max_tokens: int

    @property
    def warning(self) -> str | None:
        if self.stopped > 0:
            return None
        return (f"WARNING: the tuned model never stopped on {self.prompts} held-out prompts: every greedy generation "
                f"ran to max_new_tokens={self.max_new_tokens} (the longest reference completion is "
                f"{self.longest_target} tokens) without an end-of-sequence token, and {self.closed_think:.0%} closed "
                f"{THINK_CLOSE}. At inference it will ramble until cut off. Check that the training rows end with the "
                "tokenizer's EOS and that it is not masked out as padding (rows truncated at model.max_seq_length "
                "lose theirs).")

    def rows(self) -> list[tuple[str, str]]:
        n = self.prompts
        return [(f"closed {THINK_CLOSE}", f"{self.closed_think:.2f} ({round(self.closed_think * n)} of {n})"),
                ("stopped with EOS", f"{self.stopped:.2f} ({round(self.stopped * n)} of {n})"),
                ("new tokens, mean", f"{self.mean_tokens:.1f}"),
                ("new tokens, max", f"{self.max_tokens} (budget {self.max_new_tokens})")]

    def markdown(self) -> str:
        lines = ["## Smoke check", "",
                 f"Greedy generation (repetition penalty {REPETITION_PENALTY}) after training on {self.prompts} "
                 f"held-out prompts, the ones with the shortest reference completions, with up to "
                 f"{self.max_new_tokens} new tokens each (2x the longest of those completions, {self.longest_target} "
                 f"tokens, capped at {SMOKE_MAX_NEW_TOKENS}).", "",
                 "| smoke check | share / tokens |", "|---|---|",
                 *(f"| {label} | {value} |" for label, value in self.rows()), ""]
        if self.warning:
            lines += [f"> **{self.warning}**", ""]
        # </think> bare would be read as an HTML tag and vanish from the rendered card
        return "\n".join(lines).replace(THINK_CLOSE, f"`{THINK_CLOSE}`")


def smoke_check(examples: list[Example], tokenizer, generate_fn: Callable[[list[str], int], list[Generation]],
                n: int = SMOKE_PROMPTS) -> SmokeCheck:
    """Does the tuned model close its reasoning and stop? `generate_fn(prompts, max_new_tokens)` generates.

    The `n` held-out examples with the shortest reference completions are asked: they leave the most room
    to stop within the budget, so "none stopped" means the model does not stop, not that the budget was short.
    """
    eos = tokenizer.eos_token or ""

    def target_tokens(e: Example) -> int:  # what training taught the model to write after the prompt
        sources = getattr(e, "sources", None)
        full = tokenizer(build_training_text(e.question, e.reasoning, e.answer, eos, sources))["input_ids"]
        return len(full) - len(tokenizer(build_prompt(e.question, sources))["input_ids"])

    chosen = sorted((target_tokens(e), i, e) for i, e in enumerate(examples))[:n]
    if not chosen:
        raise FinetuneError("the smoke check needs held-out rows (data.eval_rows > 0)")
    longest = chosen[-1][0]
    budget = min(SMOKE_MAX_NEW_TOKENS, 2 * longest)
    generations = generate_fn([build_prompt(e.question, getattr(e, "sources", None)) for _, _, e in chosen], budget)
    count = len(generations)
    return SmokeCheck(prompts=count, max_new_tokens=budget, longest_target=longest,
                      closed_think=sum(THINK_CLOSE in g.text for g in generations) / count,
                      stopped=sum(g.stopped for g in generations) / count,
                      mean_tokens=sum(g.new_tokens for g in generations) / count,
                      max_tokens=max(g.new_tokens for g in generations))


def _run_config(adapter: Path) -> FinetuneConfig:
    """The config of the run that wrote `adapter` (its folder's config.yaml), else the defaults."""
    saved = adapter.parent / "config.yaml"
    return load_config(saved) if saved.is_file() else FinetuneConfig()


def compare(adapter: str | Path, data: str | None = None, n: int = 5, model: str | None = None,
            max_new_tokens: int = 256, batch_size: int = 4, say: Callable[[str], None] = print) -> Comparison:
    """Answers and eval loss of the base model and of base + adapter on the first `n` rows of `data`.

    Defaults come from the training run: its held-out rows (heldout.jsonl), column names, base model
    and sequence length.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = Path(adapter).expanduser()
    if (adapter / "adapter" / "adapter_config.json").is_file():
        adapter = adapter / "adapter"  # the run folder was given
    if not (adapter / "adapter_config.json").is_file():
        raise FinetuneError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json); "
                            "give the adapter/ folder that `medassist finetune train` wrote")
    cfg = _run_config(adapter)
    base = model or cfg.model.name
    if not model and not (adapter.parent / "config.yaml").is_file():
        base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    data = data or str(adapter.parent / "heldout.jsonl")
    if not Path(data).expanduser().is_file() and data.endswith("heldout.jsonl"):
        raise FinetuneError(f"no held-out rows at {data}: give --data (a .jsonl/.json/.csv/.parquet file)")
    data_cfg = replace(cfg.data, path=data, max_rows=None)
    examples = clean(read_rows(data_cfg, DataReport()), data_cfg, DataReport())[:n]
    if not examples:
        raise FinetuneError(f"no usable rows in {data} (columns {data_cfg.question} / {data_cfg.reasoning} / "
                            f"{data_cfg.answer})")

    say(f"Loading {base} with the adapter {adapter}")
    if Path(base).expanduser().is_dir():
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cuda = torch.cuda.is_available()
    try:
        tokenizer = AutoTokenizer.from_pretrained(adapter if (adapter / "tokenizer_config.json").is_file() else base)
        weights = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16 if cuda else torch.float32,
                                                       **({"device_map": {"": 0}} if cuda else {}))
    except OSError as exc:
        raise FinetuneError(f"cannot load base model {base}: {exc}".split("\n")[0] + " (give it with --model)") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tuned = PeftModel.from_pretrained(weights, str(adapter))
    tuned.eval()
    rows = tokenize(examples, tokenizer, cfg.model.max_seq_length, "truncate", DataReport())
    questions = [e.question for e in examples]
    with tuned.disable_adapter():
        say(f"Base model: eval loss and {len(questions)} answers")
        base_loss = eval_loss(tuned, tokenizer, rows, batch_size)
        base_answers = generate_answers(tuned, tokenizer, questions, max_new_tokens, batch_size)
    say(f"Fine-tuned model: eval loss and {len(questions)} answers")
    tuned_loss = eval_loss(tuned, tokenizer, rows, batch_size)
    tuned_answers = generate_answers(tuned, tokenizer, questions, max_new_tokens, batch_size)
    return Comparison(base, str(adapter), data, examples, base_answers, tuned_answers, base_loss, tuned_loss,
                      max_new_tokens)
