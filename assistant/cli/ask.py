"""`medassist ask`: one question, a cited and checked answer."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import click
from rich.markdown import Markdown

from assistant.cli.knowledge import ensure_starter, err, out, shown
from corpus import ROUTES


def register(main: click.Group) -> None:
    main.add_command(ask)


@click.command()
@click.argument("question", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the Answer as JSON (see DESIGN.md).")
@click.option("--route", type=click.Choice(ROUTES), help="Skip the router and use this route.")
@click.option("--backend", help="Model backend: transformers (default, in process), openai (a server), llamacpp.")
@click.option("--model", help="Model folder, .gguf file, Hub id or server model name.")
@click.option("--adapter", help="PEFT adapter folder (or LoRA .gguf for llamacpp); 'reader' or 'recipe': the packaged LoRAs.")
@click.option("--base-url", help="OpenAI-compatible server for --backend openai, e.g. http://127.0.0.1:8080/v1.")
@click.option("--no-rag", is_flag=True, help="Model-only answer, clearly labelled as unsourced.")
@click.option("-k", "k", type=click.IntRange(1, 20), help="Passages to retrieve (default 5).")
@click.option("--generate", type=click.Choice(["auto", "always", "never"]),
              help="Let the model answer after the quotes: auto (default) skips the bare packaged model.")
@click.option("--server", help="A 'medassist serve' URL that answers instead (its key: server_key / MEDASSIST_SERVER_KEY).")
@click.pass_obj
def ask(obj, question, as_json, route, backend, model, adapter, base_url, no_rag, k, generate, server):
    """Answer a medical question from the indexed sources, with numbered citations.

    The evidence answer comes first: the source sentences that answer the question, each under the
    note and section it comes from. Then the model may answer; its sentences replace the quotes only
    when each is checked against the passage it cites. When the sources do not cover the question
    the assistant says so instead of answering.
    """
    config = obj.config
    flags = dict(backend=backend, model=model, adapter=adapter, base_url=base_url, k=k, generate=generate,
                 server=server)
    config = replace(config, **{key: value for key, value in flags.items() if value})
    if config.server and (backend or model or adapter or base_url):
        raise click.UsageError("--server answers with the server's own model: drop --backend, --model, --adapter "
                               "and --base-url")
    agent = config.remote_agent() if config.server else _local_agent(obj, config, as_json)
    text = " ".join(question)
    printed = []

    def show_evidence(evidence) -> None:  # evidence first: printed before the model is loaded or asked
        if not as_json and agent.generate:
            print_answer(evidence, final=False)
            printed.append(evidence.answer)

    answer = agent.ask(text, route=route, use_rag=config.use_rag and not no_rag, on_evidence=show_evidence)
    if as_json:
        print(json.dumps(answer.as_dict(), indent=2, ensure_ascii=False))
        return
    if printed and answer.mode != "generated":
        why = ("passed the citation check but answers the question less closely than the quotes"
               if any(s.supported for s in answer.generated) else "did not pass the citation check")
        out.print(f"[dim]The model's answer {why}: the quotes above stand.[/]")
    elif printed:
        out.print("\n[bold]Model answer[/] [dim](each sentence checked against the source it cites)[/]")
    print_answer(answer, body=not printed or answer.mode == "generated", notice=not printed)


def _local_agent(obj, config, as_json: bool):
    """The agent over this home's index, its model loaded when first needed (with a spinner on a terminal)."""
    from assistant.agent import Agent

    kb = obj.kb
    ensure_starter(kb)
    factory = config.backend_factory()
    status = err.status("Loading the model...") if not as_json and err.is_terminal else None

    def load():
        if status:
            status.start()
        try:
            return factory(on_status=lambda message: err.print(f"[dim]{shown(message)}[/]"))
        finally:
            if status:
                status.stop()

    return Agent(kb, load, k=config.k, settings=config.generation_settings(), generate=config.generates())


def print_answer(answer, final: bool = True, body: bool = True, notice: bool = True) -> None:
    """The answer, its sources and a status line. `final=False`: the evidence, shown while the model writes;
    `body=False`: only the sources and status line (the evidence above stands); `notice`: the emergency
    notice, if any (shown once, above the first answer printed)."""
    safety = answer.safety
    if notice and safety.get("emergency_notice"):
        out.print(f"[bold white on red] {safety['emergency_notice']} [/]\n")
    if body:
        out.print(Markdown(answer.answer), soft_wrap=False)  # wrap list items instead of cropping them
    if not final:
        err.print("[dim]The model is writing its answer...[/]")
        return
    if answer.citations:
        out.print("\n[bold]Sources[/]")
        for c in answer.citations:
            where = " > ".join(x for x in (c.section, f"page {c.page}" if c.page else "") if x)
            out.print(f"  [{c.n}] {shown(c.title)}" + (f" — {shown(where)}" if where else "")
                      + f"  [dim]{shown(c.source)}[/]")
    confidence = f"{answer.route_confidence:.0%}"
    out.print(f"\n[dim]route: {answer.route} ({confidence}) · mode: {answer.mode}"
              + (f" · model: {answer.model} ({answer.backend})" if answer.model else "")
              + f" · {answer.timings.get('total_s', 0):.1f} s[/]")
    out.print(f"[italic dim]{safety['disclaimer']}[/]")
    if answer.abstained:
        sys.exit(0)
