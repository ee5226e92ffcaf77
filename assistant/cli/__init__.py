"""medassist: a local clinical assistant with cited answers over your own medical references.

\b
Exit codes:
  0  success
  1  some files failed to ingest (the others were ingested), or nothing matched
  2  bad usage (unknown option, missing argument)
  3  bad configuration; the index, Chroma server or model cannot be opened or
     failed; or a database is locked by another medassist process
"""

from __future__ import annotations

import os

import click

from assistant.cli import ask, chat, evaluate, knowledge, route, serve
from assistant.config import load_config
from finetune import cli as finetune_cli

EXIT_PARTIAL, EXIT_CONFIG = 1, 3

# Library progress bars and download warnings are noise in a CLI; ours are drawn by rich.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Group(click.Group):
    """Turns expected failures into one clear line and exit code 3, never a traceback."""

    def invoke(self, ctx):
        from assistant.errors import describe, expected

        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not expected(exc):
                raise
            click.secho(f"error: {describe(exc)}", fg="red", err=True)
            ctx.exit(EXIT_CONFIG)


@click.group(cls=Group, help=__doc__)
@click.option("--home", type=click.Path(file_okay=False), envvar="MEDASSIST_HOME",
              help="State directory (index, history, config.toml). Default: the user data dir.")
@click.option("--chroma-url", default=None, help="Use a Chroma server (e.g. http://127.0.0.1:8000) instead of the on-disk store.")
@click.version_option(package_name="medassist")
@click.pass_context
def main(ctx: click.Context, home: str | None, chroma_url: str | None) -> None:
    ctx.obj = _Lazy(home, chroma_url)


class _Lazy:
    """Config and knowledge base, built when a command first needs them (so `--help` stays instant)."""

    def __init__(self, home, chroma_url):
        self._args = (home, chroma_url)
        self._config = self._kb = None

    @property
    def config(self):
        if self._config is None:
            home, chroma_url = self._args
            self._config = load_config(home, chroma_url=chroma_url)
        return self._config

    @property
    def kb(self):
        if self._kb is None:
            self._kb = self.config.knowledge_base()
            self._kb.on_wait = lambda: click.secho("Another medassist process is writing to this home (an ingest "
                                                   "or remove); waiting for it to finish...", err=True)
        return self._kb


def _resolve_model(model: str, on_status) -> str:
    """For `finetune`: the packaged Gemma alias or a .gguf file -> a folder in the home's model cache.

    finetune imports nothing of ours (DESIGN.md), so the command line hands it this function.
    """
    from assistant.backends.transformers_backend import resolve_model

    return resolve_model(model, click.get_current_context().obj.config.home, on_status)


knowledge.register(main)
ask.register(main)
route.register(main)
chat.register(main)
finetune_cli.register(main, resolve_model=_resolve_model)
evaluate.register(main)
serve.register(main)
