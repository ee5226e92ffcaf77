"""F1: every key the app answers to."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

KEYS = """\
# Keys

| key | does |
|---|---|
| Enter | send the question |
| Esc | cancel the answer being generated; close a dialog |
| Ctrl+N | new chat |
| Ctrl+L | list chats: resume, rename, delete, export |
| Ctrl+O | show or hide the sources panel |
| Ctrl+R | show or hide the reasoning of every answer |
| Up / Down in the sources list | show that passage |
| F2 | settings (backend, model, adapter, k, RAG) |
| F4 | ingest files or a folder into the knowledge base |
| Ctrl+P | command palette (all of the above, and export, rename, delete) |
| F1 | this help |
| Ctrl+Q | quit |

Answers cite their sources as [n]. A sentence the sources do not support is marked
*[unsupported: …]*. medassist is decision support, not a diagnosis.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [("escape", "dismiss", "Close"), ("f1", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide"):
            yield Markdown(KEYS)
