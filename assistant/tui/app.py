"""The Textual app: owns the services (knowledge base, agent, history) and the app-wide keys and commands.

Everything slow (opening the index, loading the embedder and the model, answering, ingesting) runs
in thread workers; widgets are only touched from the UI thread (`call_from_thread`).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from assistant.config import Config, ConfigError, save_settings
from assistant.errors import describe
from assistant.history import History
from assistant.tui.screens.chat import ChatScreen
from assistant.tui.screens.confirm import Confirm
from assistant.tui.screens.help import HelpScreen
from assistant.tui.screens.history import HistoryScreen
from assistant.tui.screens.ingest import IngestScreen
from assistant.tui.screens.prompt import TextPrompt
from assistant.tui.screens.settings import MODEL_SETTINGS, SettingsScreen
from assistant.tui.widgets.status import StatusBar

# Another process (`medassist ingest` in another terminal) holds the home's write lock: said, never a silent hang.
WAITING_FOR_WRITER = "another medassist process is writing to this home; waiting for it to finish…"


class MedassistApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "medassist"
    BINDINGS = [
        Binding("ctrl+n", "new_chat", "New chat"),
        Binding("ctrl+l", "chats", "Chats"),
        Binding("f1", "help", "Help"),
        Binding("f2", "settings", "Settings"),
        Binding("f4", "ingest", "Ingest"),
        Binding("ctrl+q", "quit", "Quit", show=False),  # listed in F1 help; the footer keeps room for the rest
    ]

    def __init__(self, config: Config, keep_history: bool = True):
        super().__init__()
        self.config = config
        self.keep_history = keep_history
        self.history: History | None = None
        self.conversation_id: int | None = None
        self.kb = self.agent = None
        self.load_error = ""
        self._services_ready = threading.Event()
        self.chat = ChatScreen()
        self.ingest_lines: list[str] = []
        self.ingest_progress: tuple[int, int] | None = None  # (files done, files total) while an ingest runs

    def on_mount(self) -> None:
        self.config.home.mkdir(parents=True, exist_ok=True)
        self.history = History(self.config.home / "history.sqlite3" if self.keep_history else None)
        self.push_screen(self.chat)
        self.load_services()

    # --- services -------------------------------------------------------------------------------
    def set_status(self, text: str, model: str | None = None) -> None:
        """The loading state in the status bar (and the model's name once loaded). The loader thread calls
        this until it is done; if the app quits first, the chat screen and its bar are gone: nothing to show."""
        for bar in self.chat.query(StatusBar):
            bar.state = text
            if model:
                bar.model = model

    @work(thread=True, group="load", exclusive=True)
    def load_services(self) -> None:
        from assistant.agent import Agent
        from assistant.backends.base import BackendError

        call = self.call_from_thread
        self._services_ready.clear()
        self.agent, self.load_error = None, ""
        try:
            if self.config.server:  # a `medassist serve` server answers and ingests; history stays here
                call(self.set_status, f"connecting to {self.config.server}…")
                self.agent = self.config.remote_agent()
                self.kb = self.agent.kb
                backend = self.agent.backend
                call(self.set_status, "ready", f"{backend.model_name} ({backend.name})" if backend
                     else "evidence reader via medassist serve")
                return
            if self.kb is None:
                call(self.set_status, "opening the knowledge base…")
                kb = self.config.knowledge_base()
                kb.on_wait = lambda: call(self._ingest_event, WAITING_FOR_WRITER, None)
                kb.ensure_starter(on_progress=lambda p: call(
                    self.set_status, f"indexing the starter notes: {p.files_done}/{p.files_total} files"))
                self.kb = kb
            call(self.set_status, "loading the embedder and the router…")
            Agent(self.kb, None)  # loads the embedder once, before the model competes for the CPUs
            generate = self.config.generates()
            backend = None
            if generate or not self.config.use_rag:  # otherwise the evidence reader answers alone: no model to load
                call(self.set_status, f"loading the model ({self.config.backend})…")
                try:
                    backend = self.config.backend_factory()(on_status=lambda message: call(self.set_status, message))
                except BackendError as exc:
                    self.load_error = str(exc)
            self.agent = Agent(self.kb, (lambda: backend) if backend else None, k=self.config.k,
                               settings=self.config.generation_settings(), generate=generate)
            if backend:
                call(self.set_status, "ready", f"{backend.model_name} ({backend.name})")
            elif self.load_error:
                call(self.set_status, f"no model ({self.load_error}); answers quote the sources")
            else:
                call(self.set_status, "ready", "evidence reader (no model)")
        except Exception as exc:  # a worker error would quit the app: the bar says why, and the chat still runs
            self.load_error = describe(exc)
            call(self.set_status, f"error: {self.load_error}")
        finally:
            self._services_ready.set()

    def wait_for_agent(self, on_wait: Callable[[str], None], cancel: threading.Event | None = None):
        """The agent once loaded (None if the knowledge base failed, or `cancel` was set first); for worker threads."""
        if not self._services_ready.is_set():
            on_wait("waiting for the model to load…")
            while not self._services_ready.wait(0.1):
                if cancel is not None and cancel.is_set():
                    return None
        return self.agent

    def count_tokens(self, text: str) -> int:
        backend = self.agent.backend if self.agent else None
        return backend.count_tokens(text) if backend is not None and hasattr(backend, "count_tokens") else 0

    def record(self, role: str, content: str, answer: dict | None = None, conversation: int | None = None) -> int:
        """Store one message (UI thread only); the first question of a chat starts a conversation."""
        if conversation is None:
            if self.conversation_id is None:
                self.conversation_id = self.history.start(content)
            conversation = self.conversation_id
        if self.history.conversation(conversation) is not None:  # None: deleted while its answer was written
            self.history.add(conversation, role, content, answer)
        return conversation

    # --- chats ----------------------------------------------------------------------------------
    async def action_new_chat(self) -> None:
        self.chat.action_cancel()
        self.conversation_id = None
        await self.chat.show_conversation([])

    def action_chats(self) -> None:
        self.push_screen(HistoryScreen(self.history), self._open_chat)

    async def _open_chat(self, conversation_id: int | None) -> None:
        if conversation_id is not None:
            self.chat.action_cancel()
            self.conversation_id = conversation_id
            await self.chat.show_conversation(self.history.messages(conversation_id))

    def export_chat(self, conversation_id: int | None = None) -> Path | None:
        conversation_id = conversation_id or self.conversation_id
        if conversation_id is None:
            self.notify("Nothing to export yet: ask a question first.", severity="warning")
            return None
        path = self.config.home / "exports" / f"chat-{conversation_id}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.history.export_markdown(conversation_id), encoding="utf-8")
        self.notify(f"Exported to {path}", markup=False)  # a path is text, not markup
        return path

    def rename_chat(self) -> None:
        current = self.history.conversation(self.conversation_id) if self.conversation_id else None
        if current is None:
            self.notify("Nothing to rename yet: ask a question first.", severity="warning")
            return

        def rename(title: str | None) -> None:
            if title:
                self.history.rename(current.id, title)
                self.notify(f"Renamed to “{title}”", markup=False)

        self.push_screen(TextPrompt("New name for this chat", current.title), rename)

    def delete_chat(self, conversation_id: int | None = None, on_deleted: Callable[[], None] | None = None) -> None:
        """Delete a chat (the current one by default) once the user confirms; deleting the one on screen also
        stops its answer."""
        chosen = self.history.conversation(conversation_id or self.conversation_id or 0)
        if chosen is None:
            self.notify("Nothing to delete yet: ask a question first.", severity="warning")
            return

        async def delete(confirmed: bool | None) -> None:
            if not confirmed:
                return
            self.history.delete(chosen.id)
            self.notify("Chat deleted")
            if chosen.id == self.conversation_id:
                await self.action_new_chat()
            if on_deleted:
                on_deleted()

        self.push_screen(Confirm(f"Delete the chat “{chosen.title}”? It cannot be undone."), delete)

    # --- settings, ingest, help -----------------------------------------------------------------
    def action_settings(self) -> None:
        self.push_screen(SettingsScreen(self.config), self.save_settings)

    def save_settings(self, values: dict | None) -> None:
        """Apply changed settings now and write them to config.toml; a new model setting reloads the model."""
        if not values:
            return
        changed = {k: v for k, v in values.items() if getattr(self.config, k) != v}
        if not changed:
            return
        try:
            save_settings(self.config.home, changed)
        except (OSError, ConfigError) as exc:
            self.notify(f"Settings apply to this session only: cannot write config.toml ({exc})", severity="error",
                        markup=False)
        self.config = replace(self.config, **changed)
        self.notify("Settings saved")
        if set(changed) & set(MODEL_SETTINGS):
            self.load_services()
        elif self.agent is not None:
            self.agent.k = self.config.k

    def action_ingest(self) -> None:
        self.push_screen(IngestScreen())

    @work(thread=True, group="ingest", exclusive=True)
    def ingest(self, paths: list[str], recursive: bool = True) -> None:
        """Ingest in the background: the chat keeps answering meanwhile."""
        call = self.call_from_thread
        if not self._services_ready.is_set():
            call(self._ingest_event, "waiting for the knowledge base to open…", None)
            self._services_ready.wait()
        if self.kb is None:
            call(self._ingest_event, f"cannot ingest: {self.load_error}", None)
            return
        call(self._ingest_event, f"ingesting {', '.join(paths)}", (0, 1))

        def on_result(result) -> None:
            detail = result.reason or (f"{result.chunks} chunks" if result.chunks else "")
            call(self._ingest_event, f"{result.status:<9} {result.path}" + (f" — {detail}" if detail else ""), None)

        def on_progress(p) -> None:
            call(self._ingest_event, None, (p.files_done, p.files_total))

        try:
            results = self.kb.ingest(paths, recursive=recursive, on_result=on_result, on_progress=on_progress)
        except Exception as exc:  # a locked database, a Chroma error: reported, and the chat goes on
            call(self._ingest_event, f"stopped: {describe(exc)}", None)
            call(setattr, self, "ingest_progress", None)
            call(self.notify, f"Ingest stopped: {describe(exc)}", severity="error", markup=False)
            return
        counts = {status: sum(r.status == status for r in results) for status in {r.status for r in results}}
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no files found"
        call(self._ingest_event, f"done: {summary}", None)
        call(setattr, self, "ingest_progress", None)
        call(self.notify, f"Ingest done: {summary}", severity="error" if counts.get("failed") else "information")

    def _ingest_event(self, line: str | None, progress: tuple[int, int] | None) -> None:
        if line:
            self.ingest_lines.append(line)
        if line == WAITING_FOR_WRITER:
            self.set_status(line)
        if progress:
            self.ingest_progress = progress
            self.set_status(f"ingesting: {progress[0]}/{progress[1]} files")
        elif line and line.startswith("done:") and self.agent:
            self.set_status("ready")  # without an agent the bar keeps saying why
        for screen in self.screen_stack:
            if isinstance(screen, IngestScreen):
                screen.refresh_from_app()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("New chat", "Start a new conversation (Ctrl+N)", self.action_new_chat)
        yield SystemCommand("Chats", "Resume, rename, delete or export a conversation (Ctrl+L)", self.action_chats)
        yield SystemCommand("Export chat", "Write this conversation to a Markdown file", self.export_chat)
        yield SystemCommand("Rename chat", "Give this conversation a new name", self.rename_chat)
        yield SystemCommand("Delete chat", "Delete this conversation from the history", self.delete_chat)
        yield SystemCommand("Ingest files", "Add reference documents to the knowledge base (F4)", self.action_ingest)
        yield SystemCommand("Settings", "Backend, model, adapter, k, RAG on/off (F2)", self.action_settings)
        yield SystemCommand("Toggle sources", "Show or hide the sources panel (Ctrl+O)", self.chat.action_toggle_sources)
        yield SystemCommand("Toggle reasoning", "Show or hide the reasoning (Ctrl+R)", self.chat.action_toggle_reasoning)
        yield SystemCommand("Keys", "Every key the app answers to (F1)", self.action_help)

    def on_unmount(self) -> None:
        if self.history is not None:
            self.history.close()
