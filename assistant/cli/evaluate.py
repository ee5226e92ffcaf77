"""`medassist eval`: multiple-choice accuracy, the evaluation index, retrieval recall, the reader's rows."""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import click

from assistant.cli.knowledge import STATUS_STYLE, err, ingest_progress, out, shown


def register(main: click.Group) -> None:
    main.add_command(evaluate)


class _Group(click.Group):
    def invoke(self, ctx):
        from assistant.evaluation import EvalError

        try:
            return super().invoke(ctx)
        except EvalError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(2)


@click.group("eval", cls=_Group)
def evaluate():
    """Evaluate a model (multiple-choice accuracy) or the retrieval (recall on PubMedQA).

    \b
    Exit codes: 2 when a data file is not in the expected shape (the message names the line);
    otherwise as for medassist.
    """


def _progress(description: str):
    """A progress bar on stderr; without a terminal (a log file), a line every tenth of the way instead."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal)
    task = progress.add_task(description, total=None)
    logged = [-1]

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)
        if not err.is_terminal and (tenth := 10 * done // max(total, 1)) > logged[0]:
            logged[0] = tenth
            err.print(f"{description}: {done}/{total}")

    return progress, update


@evaluate.command("mcq")
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Multiple-choice JSONL: MIRAGE's benchmark or MedQA's test file.")
@click.option("--dataset", "datasets", multiple=True, help="Only this dataset (e.g. medqa); repeat for several.")
@click.option("--limit", type=click.IntRange(1),
              help="Only the first N of the seeded order (spread evenly across datasets).")
@click.option("--seed", default=0, show_default=True, help="Shuffles each dataset for --limit.")
@click.option("--scoring", type=click.Choice(["generate", "loglik"]), default="generate", show_default=True,
              help="generate: read the letter the model writes; loglik: choose the option the model finds most "
                   "likely (transformers backend; reports acc and acc_norm, as lm-evaluation-harness).")
@click.option("--no-rag", is_flag=True, help="Model only: no retrieved passages in the prompt.")
@click.option("-k", "k", type=click.IntRange(1, 50), help="Passages retrieved per question (default: config k, 5).")
@click.option("--index-home", type=click.Path(exists=True, file_okay=False),
              help="The home of an index built by `medassist eval build-index` (default: --home's index).")
@click.option("--backend", help="Model backend: transformers (default; batched), openai, llamacpp.")
@click.option("--model", help="Model folder, .gguf file, Hub id or server model name.")
@click.option("--adapter", help="PEFT adapter folder (or LoRA .gguf for llamacpp); 'reader' or 'recipe': the packaged LoRAs.")
@click.option("--base-url", help="OpenAI-compatible server for --backend openai.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1),
              help="Questions generated or scored together (transformers; other backends answer one at a time).")
@click.option("--think-tokens", type=click.IntRange(0),
              help="Reasoning budget; 0 answers at once (default: config, 160).")
@click.option("--max-new-tokens", type=click.IntRange(1),
              help="Reasoning + answer budget; the answer gets the rest, at least 32 (default: config, 320).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Answers and summaries folder (default: HOME/evals).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def mcq(obj, data, datasets, limit, seed, scoring, no_rag, k, index_home, backend, model, adapter, base_url, batch_size,
        think_tokens, max_new_tokens, out_dir, as_json):
    """Multiple-choice accuracy per dataset, with 95% Wilson intervals and the random-guess baseline.

    Every answer is appended to OUT/answers.jsonl under a key of the configuration (model, adapter,
    backend, retrieval, k, index, generation settings, prompt format): run the same command again
    after a crash or Ctrl-C and only the unanswered questions are asked. --limit N takes the first N
    of a fixed order: each dataset shuffled with --seed, then the datasets taken in turn, so N=100
    on MIRAGE's five sets asks 20 of each, and N=200 includes those 100.

    --scoring loglik generates nothing: each option's text is scored after the prompt (the options listed,
    then "Answer:"), and the summary gives acc (the largest summed log-probability) and acc_norm (the largest
    per character, so long options are not penalised for their length), as lm-evaluation-harness does.
    """
    from assistant.evaluation import EvalError, RunConfig, load_mcq, markdown_table, run_mcq, sample_items

    config = obj.config
    flags = dict(backend=backend, model=model, adapter=adapter, base_url=base_url, k=k)
    config = replace(config, **{key: value for key, value in flags.items() if value})
    settings = config.generation_settings()
    budgets = dict(max_think_tokens=think_tokens, max_new_tokens=max_new_tokens)
    settings = replace(settings, **{key: value for key, value in budgets.items() if value is not None})
    items = sample_items(load_mcq(data), limit, seed, datasets)
    from assistant.backends.base import ALIASES

    if scoring == "loglik" and ALIASES.get(config.backend, config.backend) != "transformers":
        raise EvalError(f"--scoring loglik needs the model's token probabilities: use --backend transformers, "
                        f"not {config.backend}")

    kb = None
    if not no_rag:
        from assistant.config import load_config

        kb = load_config(index_home).knowledge_base() if index_home else obj.kb
        if kb.manifest.count_ready_chunks() == 0:
            raise EvalError(f"the index in {kb.home} is empty: build one with `medassist eval build-index "
                            f"--home {kb.home} --medquad FILE --openfda FILE`, or pass --no-rag")
    err.print(f"Loading {config.model or 'the default model'} ({config.backend})...", markup=False)
    model_backend = config.backend_factory()(on_status=lambda message: err.print(f"[dim]{shown(message)}[/]"))
    run = RunConfig(model=model_backend.model_name, backend=model_backend.name,
                    adapter=str(Path(config.adapter_path()).resolve()) if config.adapter else None,
                    use_rag=kb is not None,
                    k=config.k, index=f"{kb.home.resolve()}@{kb.manifest.generation}" if kb else None,
                    settings=asdict(settings) if scoring == "generate" else {}, scoring=scoring)
    folder = Path(out_dir) if out_dir else config.home / "evals"
    err.print(f"{len(items)} questions · {'retrieval k=' + str(config.k) if kb else 'no retrieval'} · "
              f"configuration {run.key} · answers in {folder / 'answers.jsonl'}", markup=False)
    progress, update = _progress("answering" if scoring == "generate" else "scoring options")
    with progress:
        summary = run_mcq(items, model_backend, settings, folder, run, kb=kb, batch_size=batch_size,
                          on_progress=update)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    if summary["resumed"]:
        err.print(f"{summary['resumed']} answers reused from an earlier run of this configuration.")
    out.print(markdown_table(summary), markup=False)
    err.print(f"summary: {folder / f'summary-{run.key}.json'}", markup=False)


@evaluate.command("build-index")
@click.option("--home", "index_home", type=click.Path(file_okay=False),
              help="Where to build it (default: medassist's --home).")
@click.option("--medquad", type=click.Path(exists=True, dir_okay=False), help="MedQuAD question-answer JSONL.")
@click.option("--openfda", type=click.Path(exists=True, dir_okay=False), help="openFDA label sections (JSONL or JSON).")
@click.pass_obj
def build_index(obj, index_home, medquad, openfda):
    """Build the retrieval index for `eval mcq`: the starter notes plus the MedQuAD and openFDA files.

    The ordinary ingest does the work: a second run changes nothing, and a run stopped half-way
    continues with the files it had not finished. The whole MedQuAD corpus takes about 17 minutes
    on 2 CPU cores. Exit code 1 if a file failed.
    """
    from assistant.config import load_config
    from assistant.evaluation import build_eval_index

    kb = load_config(index_home).knowledge_base() if index_home else obj.kb
    with ingest_progress("indexing") as (on_result, on_progress):
        results = build_eval_index(kb, [p for p in (medquad, openfda) if p], on_result=on_result,
                                   on_progress=on_progress)
    counts = {s: sum(r.status == s for r in results) for s in STATUS_STYLE}
    err.print(f"[bold]Done:[/] {', '.join(f'{n} {s}' for s, n in counts.items() if n)}; "
              f"{kb.manifest.count_ready_chunks()} chunks in {shown(str(kb.home))}.")
    if counts["failed"]:
        sys.exit(1)


@evaluate.command("reader-rows")
@click.option("--in", "in_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Rows from `medassist finetune reader-data` (train.jsonl, heldout.jsonl).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Where to write them.")
@click.option("--units", default=None, type=click.IntRange(1),
              help="Lines kept per row (default: what the agent keeps).")
@click.pass_obj
def reader_rows(obj, in_dir, out_dir, units):
    """Show the reader's training rows as the agent shows passages to its model: each row's passages cut
    to the lines the evidence reader scores best for its question (the lines holding the answer always
    kept), so that the reader is trained on what it will read. 0.15 to 0.4 s a row on 2 CPU cores.
    """
    from assistant.agent import FOCUS_UNITS
    from assistant.evidence import EvidenceReader
    from assistant.reader_rows import focus_rows
    from index.embed import Embedder

    files = [Path(in_dir) / name for name in ("train.jsonl", "heldout.jsonl") if (Path(in_dir) / name).exists()]
    if not files:
        raise click.ClickException(f"{in_dir} holds neither train.jsonl nor heldout.jsonl")
    reader = EvidenceReader(Embedder(obj.config.embed_model, compute_dtype=obj.config.compute_dtype))
    for path in files:
        try:
            count = focus_rows(path, Path(out_dir) / path.name, reader, units or FOCUS_UNITS,
                               say=lambda line: err.print(line))
        except (KeyError, TypeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            raise click.ClickException(f"{path}: not reader rows ({exc})") from None
        err.print(f"{path.name}: {count} rows written to {Path(out_dir) / path.name}")


@evaluate.command("retrieval")
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False), help="PubMedQA PQA-L JSONL.")
@click.option("--limit", type=click.IntRange(1), help="Only the first N items.")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 100),
              help="Chunks retrieved per question.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def retrieval(data, limit, k, as_json):
    """Does each PubMedQA question find its own abstract? recall@1/@k and MRR for dense, BM25 and hybrid.

    Every item's contexts are indexed in a temporary home (the abstract without its conclusion, so
    neither the question nor the title), then each question is searched.
    """
    from assistant.evaluation import index_contexts, load_pubmedqa, recall_scores, retrieval_ranks

    items = load_pubmedqa(data, limit)
    scores = {}
    with tempfile.TemporaryDirectory(prefix="medassist-eval-") as tmp:
        progress, update = _progress("indexing contexts")
        with progress:
            kb, pubids_of = index_contexts(items, Path(tmp), on_progress=lambda p: update(p.files_done, p.files_total))
        for mode in ("dense", "sparse", "hybrid"):
            progress, update = _progress(f"searching ({mode})")
            with progress:
                ranks, _, _ = retrieval_ranks(kb, items, pubids_of, mode, k, on_progress=update)
            scores[mode] = recall_scores(ranks, k)
    if as_json:
        print(json.dumps({"items": len(items), "k": k, "methods": scores}, indent=2))
        return
    out.print(f"| method | recall@1 | recall@{k} | MRR |\n|---|---|---|---|")
    for mode, s in scores.items():
        cells = [f"{s[key]['value']:.3f} [{s[key]['ci95'][0]:.3f}–{s[key]['ci95'][1]:.3f}]"
                 for key in ("recall@1", f"recall@{k}")]
        out.print(f"| {mode} | {' | '.join(cells)} | {s['mrr']:.3f} |")
