"""F4: pick a file or folder and ingest it; progress and per-file results. Closing the dialog does not stop it."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label, Log, ProgressBar


class IngestScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="ingest-dialog"):
            yield Label("Ingest reference documents: Markdown, text, PDF, HTML, DOCX, MedQuAD JSONL, openFDA JSON")
            yield DirectoryTree(Path.cwd(), id="picker")
            with Horizontal(id="ingest-row"):
                yield Input(placeholder="path to a file or folder (or choose one above)", id="ingest-path")
                yield Button("Ingest", variant="primary", id="ingest-start")
            yield ProgressBar(id="ingest-progress", show_eta=False)
            yield Log(id="ingest-log")

    def on_mount(self) -> None:
        self.refresh_from_app()
        self.query_one("#ingest-path", Input).focus()

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.query_one("#ingest-path", Input).value = str(event.path)

    def on_directory_tree_directory_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        self.query_one("#ingest-path", Input).value = str(event.path)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.start()

    def start(self) -> None:
        raw = self.query_one("#ingest-path", Input).value.strip()
        if not raw:
            self.notify("Choose a file or folder first.", severity="warning")
            return
        path = Path(raw).expanduser()
        if not path.exists():
            self.notify(f"{path} does not exist.", severity="error", markup=False)
            return
        if self.app.ingest_progress is not None:
            self.notify("An ingest is already running.", severity="warning")
            return
        self.app.ingest([str(path)])

    def refresh_from_app(self) -> None:
        """Show the app's ingest state (the ingest runs in the app, so it outlives this dialog)."""
        log = self.query_one(Log)
        log.clear()
        log.write_lines(self.app.ingest_lines[-200:])
        bar = self.query_one(ProgressBar)
        progress = self.app.ingest_progress
        if progress:
            bar.update(total=max(progress[1], 1), progress=progress[0])
        elif self.app.ingest_lines:
            bar.update(total=1, progress=1)
