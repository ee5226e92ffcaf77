"""What a run leaves behind besides the adapter: a merged model, a GGUF file, and a model card.

GGUF needs llama.cpp's `convert_hf_to_gguf.py`, which is not on PyPI: it is looked for in
$LLAMA_CPP_DIR, on PATH and in ~/llama.cpp; when absent the run says how to get it and what to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONVERTER = "convert_hf_to_gguf.py"


def find_gguf_converter() -> Path | None:
    candidates = [Path(os.environ["LLAMA_CPP_DIR"]) / CONVERTER] if os.environ.get("LLAMA_CPP_DIR") else []
    on_path = shutil.which(CONVERTER)
    candidates += [Path(on_path)] if on_path else []
    candidates += [Path.home() / "llama.cpp" / CONVERTER]
    return next((c for c in candidates if c.is_file()), None)


def gguf_instructions(merged: Path, target: Path, outtype: str) -> str:
    return ("GGUF export skipped: llama.cpp's converter was not found ($LLAMA_CPP_DIR, PATH, ~/llama.cpp). To export:\n"
            "  git clone --depth 1 https://github.com/ggml-org/llama.cpp ~/llama.cpp\n"
            "  pip install -r ~/llama.cpp/requirements/requirements-convert_hf_to_gguf.txt\n"
            f"  python ~/llama.cpp/{CONVERTER} {merged} --outfile {target} --outtype {outtype}")


def export_gguf(merged: Path, target: Path, outtype: str, converter: Path) -> None:
    """Run llama.cpp's converter on the merged folder; its own error text is kept when it fails."""
    from finetune.config import FinetuneError

    done = subprocess.run([sys.executable, str(converter), str(merged), "--outfile", str(target), "--outtype", outtype],
                          capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise FinetuneError(f"GGUF conversion with {converter} failed (exit {done.returncode}):\n{tail}")


def model_card(cfg, report, result, outputs: dict[str, str]) -> str:
    """README.md for the output folder: what was trained on what, how, how well, and how to use it."""
    t, lora = cfg.train, cfg.lora
    rows_per_step = t.batch_size * t.grad_accum
    evals = result.eval_losses
    results = [f"| final train loss | {result.train_loss:.4f} |" if result.train_loss is not None else None,
               f"| eval loss before training | {evals[0][1]:.4f} |" if evals else None,
               f"| eval loss after training (step {evals[-1][0]}) | {evals[-1][1]:.4f} |" if len(evals) > 1 else None,
               f"| steps | {result.steps}{' (stopped early)' if result.stopped_early else ''} |",
               f"| adapter kept from step | {result.restored_step} |" if result.restored_step is not None else None,
               f"| training time | {result.runtime_s:.0f} s |",
               f"| throughput | {result.tokens_per_s:,.0f} tokens/s |",
               f"| peak memory | {result.peak_mem_gib:.2f} GiB ({'GPU' if result.device == 'cuda' else 'process RSS'}) |"]
    files = "\n".join(f"- `{name}`: {what}" for name, what in outputs.items())
    return f"""---
base_model: {cfg.model.name}
library_name: peft
tags: [medassist, lora, sft, trl, medical, reasoning]
---

# LoRA fine-tune of {cfg.model.name}

Supervised fine-tuning with `medassist finetune train` ({result.backend} backend, {result.precision}) on medical
chain-of-thought rows in the format of `finetune/prompt.py`: an instruction, `### Question:`,
`### Response:`, then `<think>` reasoning `</think>` and the answer.

**Decision support for professionals, not a diagnosis.** A few hundred rows of fine-tuning change the
style of the answers more than their accuracy: check them against the references.

## Data

`{cfg.data.path}` (columns {cfg.data.question} / {cfg.data.reasoning} / {cfg.data.answer}): {report.summary()}.
Rows longer than {cfg.model.max_seq_length} tokens were {'truncated' if cfg.data.overlong == 'truncate' else 'dropped'}.

## Training

| setting | value |
|---|---|
| LoRA | r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, bias={lora.bias}, on {', '.join(lora.target_modules)} |
| batch | {t.batch_size} x {t.grad_accum} accumulation = {rows_per_step} rows/step, up to {rows_per_step * cfg.model.max_seq_length:,} tokens/step |
| steps | {t.max_steps} max, warmup {t.warmup_steps}, lr {t.learning_rate:g} ({t.lr_scheduler}), {result.optimizer}, weight decay {t.weight_decay} |
| loss on | {'reasoning and answer only' if t.completion_only_loss else 'the whole text (prompt included)'} |
| 4-bit base | {result.quantized} |
| seed | {t.seed} |

## Results

| metric | value |
|---|---|
{chr(10).join(r for r in results if r)}

Per-step metrics are in `metrics.jsonl`; the curve is `loss.png`. Compare answers before and after with
`medassist finetune compare --adapter {Path(cfg.output.dir) / 'adapter'} --n 5`.

## Use

```
medassist ask --model {cfg.model.name} --adapter {Path(cfg.output.dir) / 'adapter'} --no-rag "your question"
```

## Files

{files}

## Config

```yaml
{cfg.to_yaml().rstrip()}
```
"""
