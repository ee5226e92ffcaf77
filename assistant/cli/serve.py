"""`medassist serve`: this home's knowledge base and model over HTTP, for a team; `serve keys` manages its API keys."""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import click
from rich.markup import escape

from assistant.cli.knowledge import ensure_starter, err, out
from assistant.config import ConfigError

INSTALL = "pip install 'medassist[serve]'"


def register(main: click.Group) -> None:
    main.add_command(serve)


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any other than loopback needs an API key (serve keys add).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes; each answers on its own, and writes take turns on the home's lock.")
@click.option("--backend", help="Model backend: transformers, openai (a model server), llamacpp.")
@click.option("--model", help="Model folder, .gguf file, Hub id or server model name.")
@click.option("--base-url", help="OpenAI-compatible model server for --backend openai.")
@click.option("--generate", type=click.Choice(["auto", "always", "never"]),
              help="Let the model answer after the quotes: auto (default) skips the bare packaged model.")
@click.option("--access-log", is_flag=True, help="Log every request line (its query string may hold a question).")
@click.pass_context
def serve(ctx, host, port, workers, backend, model, base_url, generate, access_log):
    """Serve the knowledge base and the assistant over HTTP (an OpenAPI schema is at /docs).

    The one writer for this home: uploads and removals go through it. Also answers as an OpenAI-compatible
    model (/v1/chat/completions) with citations in the text. Requests need an API key unless the server is
    bound to loopback and no key exists yet.
    """
    if ctx.invoked_subcommand is not None:
        return
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (uploads)
        import uvicorn
    except ImportError as exc:
        raise ConfigError(f"medassist serve needs the server packages ({exc.name} is missing): {INSTALL}") from None
    from assistant.backends.openai_backend import is_loopback
    from assistant.server.keys import KeyStore

    obj = ctx.obj
    flags = dict(backend=backend, model=model, base_url=base_url, generate=generate)
    public = not is_loopback(host)
    if public and not KeyStore(obj.config.home).active():
        raise ConfigError(f"refusing to serve on {host} without an API key: anyone who can reach it could read "
                          "and change the knowledge base. Add one with 'medassist serve keys add NAME', or bind "
                          "to 127.0.0.1")
    ensure_starter(obj.kb)  # once, here, rather than raced by every worker
    err.print(f"Serving {escape(str(obj.config.home))} on http://{escape(host)}:{port} "
              f"({workers} worker{'s' if workers > 1 else ''}; API docs at /docs)")
    settings = dict(host=host, port=port, access_log=access_log, log_level="info", timeout_graceful_shutdown=10)
    if workers == 1:
        from assistant.server.app import create_app

        config = replace(obj.config, **{name: value for name, value in flags.items() if value})
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        uvicorn.run(create_app(config, kb=obj.kb, public=public), **settings)
        return
    # Each worker is a fresh process that builds its own app from the environment set here.
    os.environ.update({f"MEDASSIST_{name.upper()}": str(value) for name, value in flags.items() if value})
    os.environ["MEDASSIST_HOME"] = str(obj.config.home)
    if obj.config.chroma_url:
        os.environ["MEDASSIST_CHROMA_URL"] = obj.config.chroma_url
    os.environ["MEDASSIST_SERVE_PUBLIC"] = "1" if public else "0"
    uvicorn.run("assistant.server.app:app_from_environment", factory=True, workers=workers, **settings)


@serve.group()
def keys():
    """API keys for the server: stored hashed in the home; `add` prints a new key once."""


@keys.command("add")
@click.argument("name")
@click.pass_obj
def add_key(obj, name):
    """Create a key named NAME (who or what uses it) and print it; it cannot be shown again."""
    from assistant.server.keys import KeyStore

    record, key = KeyStore(obj.config.home).add(name)
    err.print(f"Added key {record.id} ({escape(name)}). It is shown once; store it now:")
    click.echo(key)  # alone on stdout, so `medassist serve keys add ci > key.txt` captures just the key


@keys.command("list")
@click.pass_obj
def list_keys(obj):
    """The keys: id, name, when added, and whether revoked (never the keys themselves)."""
    from rich.table import Table

    from assistant.server.keys import KeyStore

    table = Table("id", "name", "added", "revoked", box=None)
    records = KeyStore(obj.config.home).records().values()
    for r in records:
        table.add_row(r.id, escape(r.name), r.created_at, r.revoked_at or "")
    out.print(table)
    err.print(f"{sum(r.revoked_at is None for r in records)} active keys.")


@keys.command("revoke")
@click.argument("key_id")
@click.pass_obj
def revoke_key(obj, key_id):
    """Revoke the key KEY_ID (as `keys list` shows it); a running server refuses it from the next request."""
    from assistant.server.keys import KeyStore

    record = KeyStore(obj.config.home).revoke(key_id)
    if record is None:
        err.print(f"[red]No key has the id {escape(repr(key_id))}[/] (see `medassist serve keys list`).")
        raise SystemExit(1)
    err.print(f"Revoked key {record.id} ({escape(record.name)}).")
