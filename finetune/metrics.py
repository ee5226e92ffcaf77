"""Training metrics: one JSON line per log step (metrics.jsonl), the same on stdout, a progress bar,
early stopping on eval loss, and the loss curve as a PNG.

Each train record: step, loss, lr, grad_norm, tokens_per_s (non-padding tokens over the interval since
the previous record), peak_mem_gib (CUDA allocator peak on a GPU, peak resident memory on CPU),
elapsed_s (since training began).
Each eval record: step, eval_loss.
After training, one smoke-check record: step, smoke_check (finetune.evaluate.SmokeCheck's numbers).
"""

from __future__ import annotations

import json
import math
import resource
import time
from pathlib import Path
from typing import Callable

from transformers import TrainerCallback


def peak_memory_gib() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class MetricsLogger(TrainerCallback):
    """Writes metrics.jsonl and stdout lines, draws the progress bar, and stops early when asked.

    Early stopping keeps a copy of the best adapter weights in memory (LoRA weights are small: ~170 MB
    for the seeds' 8B setup in fp32), so the saved adapter is the best one without checkpoint files.
    """

    def __init__(self, path: Path, say: Callable[[str], None] = print, patience: int = 0, min_delta: float = 0.0):
        self.path, self.say = path, say
        self.patience, self.min_delta = patience, min_delta
        self.records: list[dict] = []
        self.best_loss: float | None = None
        self.best_step: int | None = None
        self.best_weights: dict | None = None
        self.evals_without_improvement = 0
        self.stopped_early = False
        self.tokens_seen = 0  # non-padding training tokens, counted by the trainer (recipe.sft_trainer_class)
        self._last = (0, time.perf_counter())  # (tokens seen, time) at the previous train record
        self._started = time.perf_counter()
        self._progress = self._task = None

    # -- the progress bar (stderr, only on a terminal, so logs and pipes stay clean)
    def on_train_begin(self, args, state, control, **kwargs):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self._progress = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                  console=console, transient=True, disable=not console.is_terminal)
        self._progress.start()
        self._task = self._progress.add_task("train", total=state.max_steps)
        self._started = time.perf_counter()
        self._last = (self._last[0], self._started)

    def on_step_end(self, args, state, control, **kwargs):
        if self._progress:
            self._progress.update(self._task, completed=state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self._progress:
            self._progress.stop()
            self._progress = None

    # -- metrics
    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            tokens, now = int(self.tokens_seen), time.perf_counter()
            rate = (tokens - self._last[0]) / max(now - self._last[1], 1e-9)
            self._last = (tokens, now)
            record = {"step": state.global_step, "loss": logs["loss"], "lr": logs.get("learning_rate"),
                      "grad_norm": logs.get("grad_norm"), "tokens_per_s": round(rate, 1),
                      "peak_mem_gib": round(peak_memory_gib(), 3), "elapsed_s": round(now - self._started, 3)}
            line = (f"step {record['step']:>5}  loss {record['loss']:.4f}  lr {record['lr'] or 0:.2e}  "
                    f"grad_norm {record['grad_norm'] or 0:.3f}  {rate:,.0f} tok/s  {record['peak_mem_gib']:.2f} GiB")
        elif "eval_loss" in logs:
            record = {"step": state.global_step, "eval_loss": logs["eval_loss"]}
            line = f"step {record['step']:>5}  eval_loss {record['eval_loss']:.4f}"
        else:
            return
        self.write(record)
        self.say(line)

    def write(self, record: dict) -> None:
        """One record into metrics.jsonl (and `records`): train and eval steps, and the recipe's smoke check."""
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if not self.patience or loss is None:
            return
        if self.best_loss is None or loss < self.best_loss - self.min_delta:
            from peft import get_peft_model_state_dict

            self.best_loss, self.best_step, self.evals_without_improvement = loss, state.global_step, 0
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in get_peft_model_state_dict(model).items()}
            return
        self.evals_without_improvement += 1
        if self.evals_without_improvement >= self.patience and not self.stopped_early:
            self.stopped_early = True
            control.should_training_stop = True
            self.say(f"early stopping at step {state.global_step}: no eval loss below {self.best_loss:.4f} "
                     f"(step {self.best_step}) in {self.patience} evals")

    def restore_best(self, model) -> int | None:
        """Put the best adapter weights back (when early stopping kept any); the step they come from."""
        if self.best_weights is None:
            return None
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, self.best_weights)
        return self.best_step


def read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_loss(records: list[dict], target: Path, title: str = "") -> Path | None:
    """Train (and eval) loss against step as a PNG; None when there is nothing finite to draw."""
    train = [(r["step"], r["loss"]) for r in records if "loss" in r and math.isfinite(r["loss"])]
    evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r and math.isfinite(r["eval_loss"])]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1.5)
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss (held out)", linewidth=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(target)
    plt.close(fig)
    return target
