"""`medassist chat`: the terminal chat app."""

from __future__ import annotations

from dataclasses import replace

import click


def register(main: click.Group) -> None:
    main.add_command(chat)


@click.command()
@click.option("--no-history", is_flag=True, help="Keep nothing on disk: this session's chats are not saved.")
@click.option("--backend", help="Model backend: transformers (default), openai, llamacpp.")
@click.option("--model", help="Model folder, .gguf file, Hub id or server model name.")
@click.option("--adapter", help="PEFT adapter folder (or LoRA .gguf for llamacpp); 'reader' or 'recipe': the packaged LoRAs.")
@click.option("--base-url", help="OpenAI-compatible server for --backend openai.")
@click.option("--no-rag", is_flag=True, help="Model-only answers, labelled unsourced.")
@click.option("--generate", type=click.Choice(["auto", "always", "never"]),
              help="Let the model answer after the quotes: auto (default) skips the bare packaged model.")
@click.option("--server", help="A 'medassist serve' URL that answers instead (its key: server_key / MEDASSIST_SERVER_KEY).")
@click.pass_obj
def chat(obj, no_history, backend, model, adapter, base_url, no_rag, generate, server):
    """Chat in the terminal: cited answers, reasoning, sources, ingest, saved sessions (F1 lists the keys)."""
    from assistant.tui.app import MedassistApp

    if server and (backend or model or adapter or base_url):
        raise click.UsageError("--server answers with the server's own model: drop --backend, --model, --adapter "
                               "and --base-url")
    flags = dict(backend=backend, model=model, adapter=adapter, base_url=base_url, generate=generate, server=server)
    config = replace(obj.config, **{key: value for key, value in flags.items() if value})
    if no_rag:
        config = replace(config, use_rag=False)
    MedassistApp(config, keep_history=not no_history).run()
