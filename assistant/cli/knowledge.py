"""Knowledge-base commands: ingest, sources, remove, prune, search."""

from __future__ import annotations

import json
import re
import sys
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from corpus import ROUTES

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # one line per file, never wrapped mid-path
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """Text from documents, users, file names and errors, as rich should print it on one line. Escaped: to rich,
    "[draft notes]" is a style to drop and "[/INST]" a closing tag to crash on. Control characters (a file
    named with an escape sequence, a newline) shown as "?", as `ls` does: a terminal would obey them."""
    return escape(_UNPRINTABLE.sub("?", text))


STATUS_STYLE = {"added": "green", "replaced": "cyan", "unchanged": "dim", "skipped": "yellow", "failed": "red"}


@contextmanager
def ingest_progress(description: str):
    """Progress bars on stderr (files, and chunks of the current file); yields (on_result, on_progress)."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
        files = progress.add_task(description, total=None)
        chunks = progress.add_task("  chunks", total=None)

        def on_progress(p) -> None:
            progress.update(files, completed=p.files_done, total=p.files_total)
            progress.update(chunks, completed=p.chunks_done, total=p.chunks_total or None,
                            description=f"  {shown(Path(p.path).name)}" if p.chunks_total else "  chunks")

        def on_result(result) -> None:
            style = STATUS_STYLE[result.status]
            detail = result.reason or (f"{result.chunks} chunks" if result.status in ("added", "replaced") else "")
            progress.console.print(f"[{style}]{result.status:>9}[/] {shown(str(result.path))}  "
                                   f"[dim]{shown(detail)}[/]")

        yield on_result, on_progress


def ensure_starter(kb) -> None:
    """The first command against an empty home ingests the starter notes, once, with progress; the first after an
    upgrade that changed them reads them again."""
    if not kb.starter_pending():
        return
    first = not kb.manifest.get_meta("starter_ingested")
    err.print("[bold]First run:[/] indexing the built-in starter notes (once)..." if first else
              "[bold]The starter notes changed in this version:[/] reading them again...")
    with ingest_progress("starter notes") as (on_result, on_progress):
        results = kb.ensure_starter(on_progress=on_progress)
    done = [r for r in results or [] if r.status in ("added", "replaced")]
    err.print(f"Indexed {len(done)} starter notes.")


def register(main: click.Group) -> None:
    main.add_command(ingest)
    main.add_command(sources)
    main.add_command(remove)
    main.add_command(prune)
    main.add_command(search)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--route", type=click.Choice(ROUTES), help="Route tag for every chunk, overriding the files' own.")
@click.option("-r", "--recursive", is_flag=True, help="Walk directories recursively.")
@click.option("--follow-links", is_flag=True,
              help="Follow symlinks that lead out of the named folders (skipped and reported by default).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file.")
@click.pass_obj
def ingest(obj, paths, route, recursive, follow_links, as_json):
    """Add or update reference documents (Markdown, text, PDF, HTML, DOCX, MedQuAD JSONL, openFDA JSON).

    Unchanged files are skipped; a changed file replaces its old version in one step. Each file is
    reported as added, replaced, unchanged, skipped or failed (with the reason). Exit code 1 if any
    file failed; the others are still ingested.
    """
    kb = obj.kb
    ensure_starter(kb)
    with ingest_progress("ingesting") as (on_result, on_progress):
        results = kb.ingest(paths, route=route, recursive=recursive, follow_links=follow_links,
                            on_result=None if as_json else on_result, on_progress=on_progress)
    if as_json:
        for result in results:
            print(json.dumps(result.as_dict()))
    counts = {s: sum(r.status == s for r in results) for s in STATUS_STYLE}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no files found"
    err.print(f"[bold]Done:[/] {summary}.")
    if counts["failed"]:
        sys.exit(1)


@click.command()
@click.option("--missing", is_flag=True, help="Only documents whose file is gone (deleted or moved).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_obj
def sources(obj, missing, as_json):
    """List the indexed documents."""
    kb = obj.kb
    ensure_starter(kb)
    docs = kb.missing() if missing else kb.documents()
    if as_json:
        print(json.dumps([d.as_dict() for d in docs], indent=2))
        return
    print_documents(docs)
    err.print(f"{len(docs)} documents{' whose files are gone' if missing else ''}, "
              f"{sum(d.n_chunks for d in docs)} chunks.")


def print_documents(docs) -> None:
    table = Table("doc_id", "title", "routes", "chunks", "ingested", box=None)
    table.add_column("source", overflow="fold")
    for d in docs:
        table.add_row(d.doc_id[:12], shown(d.title), ",".join(d.routes), str(d.n_chunks), d.ingested_at[:10],
                      shown(d.source))
    out.print(table)


@click.command()
@click.argument("key")
@click.pass_obj
def remove(obj, key):
    """Remove a document completely, by DOC_ID (or its first 8+ characters) or by source PATH (which may be
    relative, and need not exist any more; `prune` removes every document whose file is gone)."""
    removed = obj.kb.remove(key)
    if not removed:
        err.print(f"[red]No document matches {shown(repr(key))}[/] (see `medassist sources`).")
        sys.exit(1)
    for d in removed:
        err.print(f"removed {d.doc_id[:12]} {shown(d.title)} ({d.n_chunks} chunks) {shown(d.source)}")


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("-y", "--yes", is_flag=True, help="Remove without asking.")
@click.pass_obj
def prune(obj, dry_run, yes):
    """Remove the documents whose files are gone (deleted or moved since they were ingested).

    Lists them first and asks before removing anything, unless --yes.
    """
    kb = obj.kb
    gone = kb.missing()
    if not gone:
        err.print("Nothing to prune: every indexed file is still there.")
        return
    print_documents(gone)
    if dry_run:
        err.print(f"{len(gone)} documents would be removed (dry run: nothing was).")
        return
    if not yes and not click.confirm(f"Remove these {len(gone)} documents from the index?", err=True):
        err.print("Nothing removed.")
        return
    for d in kb.prune(gone):
        err.print(f"removed {d.doc_id[:12]} {shown(d.title)} ({d.n_chunks} chunks) {shown(d.source)}")


@click.command()
@click.argument("query", nargs=-1, required=True)
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 100), help="Passages to return.")
@click.option("--route", type=click.Choice(ROUTES), help="Only passages tagged with this route.")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "sparse"]), default="hybrid", show_default=True,
              help="Dense (embeddings), sparse (BM25) or both fused by reciprocal rank.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of passages.")
@click.pass_obj
def search(obj, query, k, route, mode, as_json):
    """Search the indexed documents; prints ranked passages with title, section, page, source and score."""
    kb = obj.kb
    ensure_starter(kb)
    passages = kb.search(" ".join(query), k=k, route=route, mode=mode)
    if as_json:
        print(json.dumps([p.as_dict() for p in passages], indent=2))
    for n, p in enumerate([] if as_json else passages, start=1):
        c = p.chunk
        where = " > ".join(x for x in (c.section, f"page {c.page}" if c.page else "") if x)
        out.print(f"[bold][{n}] {shown(c.title)}[/]" + (f" — {shown(where)}" if where else "")
                  + f"  [dim]score {p.score:.4f} · {','.join(c.routes)}[/]")
        out.print(f"    [dim]{shown(c.source)}[/]")
        text = " ".join(c.text.split())
        out.print(f"    {text[:300]}{'…' if len(text) > 300 else ''}\n", markup=False)
    if not passages:
        err.print("No passages matched.")
        sys.exit(1)
