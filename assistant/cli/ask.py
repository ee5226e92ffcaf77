"""`medassist ask`: one question, a cited and checked answer."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import click
from rich.markdown import Markdown

from assistant.cli.knowledge import ensure_starter, err, out
from corpus import ROUTES


def register(main: click.Group) -> None:
    main.add_command(ask)


@click.command()
@click.argument("question", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the Answer as JSON (see DESIGN.md).")
@click.option("--route", type=click.Choice(ROUTES), help="Skip the router and use this route.")
@click.option("--backend", help="Model backend: transformers (default, in process), openai (a server), llamacpp.")
@click.option("--model", help="Model folder, .gguf file, Hub id or server model name.")
@click.option("--adapter", type=click.Path(exists=True), help="PEFT adapter folder (or LoRA .gguf for llamacpp).")
@click.option("--base-url", help="OpenAI-compatible server for --backend openai, e.g. http://127.0.0.1:8080/v1.")
@click.option("--no-rag", is_flag=True, help="Model-only answer, clearly labelled as unsourced.")
@click.option("-k", "k", type=click.IntRange(1, 20), help="Passages to retrieve (default 5).")
@click.pass_obj
def ask(obj, question, as_json, route, backend, model, adapter, base_url, no_rag, k):
    """Answer a medical question from the indexed sources, with numbered citations.

    Each answer sentence is checked against the passages it cites; unsupported sentences are
    marked. When the sources do not cover the question the assistant says so instead of answering.
    """
    from assistant.agent import Agent

    config = obj.config
    flags = dict(backend=backend, model=model, adapter=adapter, base_url=base_url, k=k)
    config = replace(config, **{key: value for key, value in flags.items() if value})
    kb = obj.kb
    ensure_starter(kb)
    factory = config.backend_factory()
    status = err.status("Loading the model...") if not as_json and err.is_terminal else None

    def load():
        if status:
            status.start()
        try:
            return factory(on_status=lambda message: err.print(f"[dim]{message}[/]"))
        finally:
            if status:
                status.stop()

    agent = Agent(kb, load, k=config.k, settings=config.generation_settings())
    text = " ".join(question)
    answer = agent.ask(text, route=route, use_rag=config.use_rag and not no_rag)
    if as_json:
        print(json.dumps(answer.as_dict(), indent=2, ensure_ascii=False))
        return
    print_answer(answer)


def print_answer(answer) -> None:
    safety = answer.safety
    if safety.get("emergency_notice"):
        out.print(f"[bold white on red] {safety['emergency_notice']} [/]\n")
    out.print(Markdown(answer.answer), soft_wrap=False)  # wrap list items instead of cropping them
    if answer.citations:
        out.print("\n[bold]Sources[/]")
        for c in answer.citations:
            where = " > ".join(x for x in (c.section, f"page {c.page}" if c.page else "") if x)
            out.print(f"  [{c.n}] {c.title}" + (f" — {where}" if where else "") + f"  [dim]{c.source}[/]")
    confidence = f"{answer.route_confidence:.0%}"
    out.print(f"\n[dim]route: {answer.route} ({confidence}) · mode: {answer.mode}"
              + (f" · model: {answer.model} ({answer.backend})" if answer.model else "")
              + f" · {answer.timings.get('total_s', 0):.1f} s[/]")
    out.print(f"[italic dim]{safety['disclaimer']}[/]")
    if answer.abstained:
        sys.exit(0)
