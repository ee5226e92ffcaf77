"""F2: backend, model, adapter, k and RAG; saved to config.toml by the app."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Switch

from assistant.backends import available_backends
from assistant.config import Config

MODEL_SETTINGS = ("backend", "model", "adapter", "base_url")  # changing one of these reloads the model


class SettingsScreen(ModalScreen[dict | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, config: Config):
        super().__init__()
        self.config = config

    def compose(self) -> ComposeResult:
        c = self.config
        with Vertical(classes="dialog", id="settings-dialog"):
            yield Label("Backend")
            yield Select([(name, name) for name in available_backends()], value=c.backend, allow_blank=False,
                         id="backend")
            yield Label("Model (folder, .gguf, Hub id or server model name; empty: Gemma-3-270M)")
            yield Input(c.model or "", id="model")
            yield Label("Adapter (PEFT folder, or LoRA .gguf for llamacpp; empty: none)")
            yield Input(c.adapter or "", id="adapter")
            yield Label("Server URL (openai backend)")
            yield Input(c.base_url or "", id="base_url")
            yield Label("Passages per answer (k)")
            yield Input(str(c.k), id="k", type="integer")
            with Horizontal(classes="switch-row"):
                yield Switch(value=c.use_rag, id="use_rag")
                yield Label("Answer from the sources (RAG); off: model-only, labelled unsourced")
            with Horizontal(classes="buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        k = self.query_one("#k", Input).value.strip()
        if not k.isdigit() or not 1 <= int(k) <= 20:
            self.notify("k must be a whole number from 1 to 20.", severity="error")
            return
        text = lambda name: self.query_one(f"#{name}", Input).value.strip() or None  # noqa: E731
        self.dismiss({"backend": self.query_one("#backend", Select).value, "model": text("model"),
                      "adapter": text("adapter"), "base_url": text("base_url"), "k": int(k),
                      "use_rag": self.query_one("#use_rag", Switch).value})
