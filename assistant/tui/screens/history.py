"""Ctrl+L: stored conversations. Enter resumes one; r renames, d deletes (once confirmed), e exports it to Markdown."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, OptionList
from textual.widgets.option_list import Option

from assistant.history import History
from assistant.tui.screens.prompt import TextPrompt


class HistoryScreen(ModalScreen[int | None]):
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("r", "rename", "Rename"),
        Binding("d", "delete", "Delete"),
        Binding("e", "export", "Export"),
    ]

    def __init__(self, history: History):
        super().__init__()
        self.history = history

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Chats (Enter: resume · r: rename · d: delete · e: export · Esc: close)")
            yield OptionList(id="chats", markup=False)  # chat names are what users typed: text, not markup
        yield Footer()

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        chats = self.query_one(OptionList)
        highlighted = chats.highlighted
        chats.clear_options()
        conversations = self.history.conversations()
        chats.add_options([Option(f"{c.title}  ·  {c.n_messages // 2} questions  ·  {c.updated_at[:16].replace('T', ' ')}",
                                  id=str(c.id)) for c in conversations])
        if not conversations:
            chats.add_option(Option("No chats yet.", disabled=True))
        else:  # keep the cursor where it was (the first chat at first), so r / d / e act on a visible choice
            chats.highlighted = min(highlighted or 0, len(conversations) - 1)
        chats.focus()

    def _selected(self) -> int | None:
        chats = self.query_one(OptionList)
        if chats.highlighted is None:
            return None
        option = chats.get_option_at_index(chats.highlighted)
        return int(option.id) if option.id else None

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.dismiss(int(event.option.id))

    def action_rename(self) -> None:
        chosen = self._selected()
        if chosen is None:
            return

        def rename(title: str | None) -> None:
            if title:
                self.history.rename(chosen, title)
                self.reload()

        self.app.push_screen(TextPrompt("New name for this chat", self.history.conversation(chosen).title), rename)

    def action_delete(self) -> None:
        chosen = self._selected()
        if chosen is not None:
            self.app.delete_chat(chosen, on_deleted=self.reload)

    def action_export(self) -> None:
        chosen = self._selected()
        if chosen is not None:
            self.app.export_chat(chosen)
