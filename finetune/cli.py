"""`medassist finetune`: LoRA fine-tuning of the reasoning model, and base vs fine-tuned answers.

Only click and the config are imported here; torch, transformers, peft and trl load inside the
commands, so `medassist --help` stays instant.
"""

from __future__ import annotations

import json
import sys
from typing import Callable

import click

from finetune.config import FinetuneError, load_config, parse_overrides

EXIT_CONFIG, EXIT_INTERRUPTED = 3, 130

# Turns a model alias (the packaged Gemma-3-270M) or a .gguf file into a loadable folder. The assistant's
# command line passes its model cache in (`register`): finetune may import nothing of ours (DESIGN.md).
ResolveModel = Callable[[str, Callable[[str], None]], str]
_resolve_model: ResolveModel | None = None


def register(main: click.Group, resolve_model: ResolveModel | None = None) -> None:
    global _resolve_model
    _resolve_model = resolve_model
    main.add_command(finetune)


def _resolve(name: str) -> str:
    return _resolve_model(name, lambda message: click.echo(message, err=True)) if _resolve_model else name


def _fail(message: str, code: int = EXIT_CONFIG) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


@click.group()
def finetune():
    """LoRA fine-tuning on medical chain-of-thought data (train), and base vs tuned answers (compare).

    \b
    Packaged configs (--config NAME):
      medical_o1_unsloth   the seeds' recipe: DeepSeek-R1-Distill-Llama-8B, Unsloth, a CUDA GPU
      gemma3_270m_cpu      the packaged Gemma-3-270M, Transformers + PEFT + TRL, a CPU
      gemma3_270m_reader   Gemma-3-270M as the grounded reader, on rows from `finetune reader-data`, a GPU
    Needs pip install 'medassist[train]' ('medassist[gpu]' for Unsloth).
    """


@finetune.command()
@click.option("--config", "config_path", required=True, help="YAML config file, or a packaged config name.")
@click.option("--model", help="Base model: a folder, a Hub id, or gemma-3-270m (the packaged model).")
@click.option("--data", help="A .jsonl/.json/.csv/.parquet file, or a Hub dataset id.")
@click.option("--output", help="Output folder (adapter, merged model, metrics, model card).")
@click.option("--max-steps", type=click.IntRange(1), help="Optimizer steps.")
@click.option("--max-seq-length", type=click.IntRange(16), help="Tokens per row; longer rows are truncated or dropped.")
@click.option("--backend", type=click.Choice(["auto", "unsloth", "hf"]),
              help="auto: Unsloth with CUDA, else Transformers + PEFT + TRL.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any config key, e.g. --set lora.r=32 --set train.learning_rate=1e-4 (repeatable).")
def train(config_path, model, data, output, max_steps, max_seq_length, backend, sets):
    """Fine-tune a LoRA adapter: setup, train, save (adapter, merged model, GGUF, loss curve, model card).

    Loss, learning rate, grad norm, tokens/s and memory are printed and written to OUTPUT/metrics.jsonl;
    eval loss on held-out rows every eval.every steps. Exit code 3 for a bad config, data or model;
    130 when interrupted.
    """
    flags = {"model.name": model, "data.path": data, "output.dir": output, "train.max_steps": max_steps,
             "model.max_seq_length": max_seq_length, "model.backend": backend}
    try:
        overrides = {**parse_overrides(sets), **{k: v for k, v in flags.items() if v is not None}}
        cfg = load_config(config_path, overrides)
    except FinetuneError as exc:
        _fail(str(exc))
    import importlib.util

    missing = [name for name in ("trl", "datasets") if importlib.util.find_spec(name) is None]
    if missing:
        _fail(f"training needs {' and '.join(missing)}: pip install 'medassist[train]' ('medassist[gpu]' on a "
              "CUDA machine, for Unsloth)")
    cfg.model.name = _resolve(cfg.model.name)

    from finetune.recipe import run

    try:
        run(cfg, say=lambda line: click.echo(line))
    except FinetuneError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail(f"interrupted; what was written so far is in {cfg.output.dir}", EXIT_INTERRUPTED)


@finetune.command()
@click.option("--adapter", required=True, type=click.Path(exists=True, file_okay=False),
              help="The adapter/ folder of a run (or the run folder).")
@click.option("--data", help="Rows to ask about. Default: the run's held-out rows (heldout.jsonl).")
@click.option("--n", "n", default=5, show_default=True, type=click.IntRange(1), help="Questions to answer.")
@click.option("--model", help="Base model. Default: the one the run trained.")
@click.option("--max-new-tokens", default=256, show_default=True, type=click.IntRange(1))
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="Markdown file to write. Default: compare.md in the run folder.")
def compare(adapter, data, n, model, max_new_tokens, out_path):
    """Base vs fine-tuned answers side by side on held-out questions, with the eval loss of both, as Markdown."""
    from pathlib import Path

    from finetune.evaluate import compare as run_compare

    try:
        result = run_compare(adapter, data=data, n=n, model=_resolve(model) if model else None,
                             max_new_tokens=max_new_tokens, say=lambda line: click.echo(line, err=True))
    except FinetuneError as exc:
        _fail(str(exc))
    run_dir = Path(result.adapter).parent
    target = Path(out_path) if out_path else run_dir / "compare.md"
    text = result.markdown()
    target.write_text(text + "\n", encoding="utf-8")
    click.echo(text)
    click.echo(f"eval loss: base {result.base_loss:.4f}, fine-tuned {result.tuned_loss:.4f}; written to {target}",
               err=True)


@finetune.command("reader-data")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False),
              help="Folder with medquad_qa_corpus.jsonl (required), pubmedqa_pqal.jsonl, "
                   "openfda_drug_label_sections_sample.jsonl and medical_o1_sft_en.jsonl.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to write train.jsonl, heldout.jsonl and report.json to (keep it out of git).")
@click.option("--seed", default=3407, show_default=True, type=int, help="Same seed, same files.")
@click.option("--medquad", default=2000, show_default=True, type=click.IntRange(0), help="Answerable MedQuAD rows.")
@click.option("--pubmedqa", default=150, show_default=True, type=click.IntRange(0),
              help="Answerable PubMedQA rows (train_dev only).")
@click.option("--unanswerable-share", default=0.2, show_default=True, type=click.FloatRange(0, 0.9),
              help="Share of rows whose passages do not answer the question.")
@click.option("--note-share", default=0.6, show_default=True, type=click.FloatRange(0, 1),
              help="Share of rows whose passages are shown as notes ('Title > Section', list items); 0: all prose.")
@click.option("--keyword", default=800, show_default=True, type=click.IntRange(0),
              help="Extra shorthand questions about one line of a note.")
@click.option("--vignette-share", default=0.25, show_default=True, type=click.FloatRange(0, 1),
              help="Share of answerable MedQuAD questions asked as a case ('A 54-year-old woman with ...').")
def reader_data(data_dir, out_dir, seed, medquad, pubmedqa, unanswerable_share, note_share, keyword,
                vignette_share):
    """Build grounded-answer (RAFT-style) rows for the reader: a question, 4-5 numbered passages (one
    answers it, BM25 distractors around it; or only distractors), and a short answer citing [n] or
    saying "The sources do not say."

    PubMedQA rows of the official test split (MIRAGE's PubMedQA*) are never used. A missing optional
    input is reported and skipped. Exit code 3 when MedQuAD is missing or an input cannot be read.

    \b
    Then train on them:
      medassist finetune train --config gemma3_270m_reader --data OUT/train.jsonl
    """
    from finetune.reader_data import BuildOptions, build

    options = BuildOptions(seed=seed, medquad=medquad, pubmedqa=pubmedqa, unanswerable_share=unanswerable_share,
                           note_share=note_share, keyword=keyword, vignette_share=vignette_share)
    try:
        report = build(data_dir, out_dir, options, say=lambda line: click.echo(line, err=True))
    except FinetuneError as exc:
        _fail(str(exc))
    except OSError as exc:  # the output folder cannot be written
        _fail(f"cannot write to {out_dir}: {exc.strerror or exc}")
    click.echo(json.dumps(report.as_dict(), indent=2))
