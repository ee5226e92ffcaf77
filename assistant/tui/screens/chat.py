"""The main screen: the conversation, the sources panel, the question box, status and keys."""

from __future__ import annotations

import threading
import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from assistant.errors import describe
from assistant.tui.widgets.exchange import Exchange
from assistant.tui.widgets.question import QuestionBox
from assistant.tui.widgets.sources import SourcesPanel
from assistant.tui.widgets.status import StatusBar

WELCOME = ("Ask a clinical question. Answers cite the indexed sources as [n] (Ctrl+O shows them); "
           "F4 adds your own references; F1 lists every key. Decision support, not a diagnosis.")


class ChatScreen(Screen):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel answer"),
        Binding("ctrl+o", "toggle_sources", "Sources"),
        Binding("ctrl+r", "toggle_reasoning", "Reasoning"),
    ]

    def __init__(self):
        super().__init__()
        self.cancel_event: threading.Event | None = None
        self.answering: Exchange | None = None  # the exchange whose answer is being written
        self.show_reasoning = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with VerticalScroll(id="conversation"):
                yield Static(WELCOME, id="welcome", markup=False)  # "[n]" is text, not a markup tag
            yield SourcesPanel(id="sources")
        yield QuestionBox(placeholder="Ask a medical question and press Enter", id="question")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#question", Input).focus()

    @property
    def busy(self) -> bool:
        return self.cancel_event is not None

    # --- asking -----------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if not question:
            return
        if self.busy:
            self.notify("An answer is still being written: wait, or press Esc to cancel it.", severity="warning")
            return
        event.input.value = ""
        self.query_one("#welcome").display = False
        exchange = Exchange(question)
        self.query_one("#conversation").mount(exchange)
        exchange.scroll_visible()
        self.cancel_event, self.answering = threading.Event(), exchange
        self.ask(question, exchange, self.cancel_event)

    @work(thread=True, group="ask")
    def ask(self, question: str, exchange: Exchange, cancel: threading.Event) -> None:
        app = self.app
        call = app.call_from_thread

        def show(update, *args) -> None:  # nothing to show once the exchange is gone (a new chat, its chat deleted)
            call(lambda: None if exchange.retired else update(*args))

        try:
            agent = app.wait_for_agent(lambda text: show(exchange.set_status, text), cancel)
            if cancel.is_set():
                return
            if agent is None:
                show(exchange.set_status, f"cannot answer: {app.load_error}")
                return
            show(exchange.show_reasoning, self.show_reasoning)
            show(exchange.set_status, "writing…")
            conversation = call(self._record_question, exchange, question)
            started, pieces = time.perf_counter(), []

            def on_text(phase: str, piece: str) -> None:
                pieces.append(piece)
                show(exchange.add_reasoning if phase == "reasoning" else exchange.add_answer, piece)

            def on_evidence(evidence) -> None:  # evidence first: on screen before the model starts
                shown = evidence.as_dict()
                show(exchange.show_evidence, shown, agent.generate and agent.backend is not None)
                show(self.query_one(SourcesPanel).show, shown.get("citations") or [])

            answer = agent.ask(question, use_rag=app.config.use_rag, k=app.config.k, on_text=on_text, cancel=cancel,
                               on_evidence=on_evidence)
            if cancel.is_set():  # Esc: the chat stopped waiting for this answer (see action_cancel)
                return
            generate_s = answer.timings.get("generate_s") or (time.perf_counter() - started)
            tokens = app.count_tokens("".join(pieces)) if pieces else 0
            call(app.record, "assistant", answer.answer, answer.as_dict(), conversation)
            show(self.finished, exchange, answer.as_dict(), tokens / generate_s if tokens else 0.0)
        except Exception as exc:  # a server failing mid-answer, a bad URL, a locked database: the chat goes on
            if not cancel.is_set():
                call(self.failed, exchange, describe(exc))
        finally:
            call(self._idle, cancel)

    def _record_question(self, exchange: Exchange, question: str) -> int:
        """History is touched from the UI thread only; the exchange remembers its conversation for a cancel."""
        exchange.conversation = self.app.record("user", question)
        return exchange.conversation

    def _idle(self, cancel: threading.Event) -> None:
        if self.cancel_event is cancel:  # not a later question's
            self.cancel_event = self.answering = None

    def failed(self, exchange: Exchange, error: str) -> None:
        """The answer stopped on an error: say so where it was asked and in a notice; the question stays in the
        history, and the next one is answered as usual."""
        self.notify(f"The answer failed: {error}", severity="error", markup=False)
        if not exchange.retired:
            exchange.stop(error)

    def finished(self, exchange: Exchange, answer: dict, tokens_per_s: float) -> None:
        exchange.finish(answer)
        self.query_one(SourcesPanel).show(answer.get("citations") or [])
        if tokens_per_s:
            self.query_one(StatusBar).tokens_per_s = tokens_per_s
        exchange.scroll_visible()

    def action_cancel(self) -> None:
        """Stop the answer now, even before its first token (a server may think for minutes; the model may still be
        loading): what it shows stays, with the evidence as its answer (kept in the history) when it was read, the
        next question can be asked at once, and the worker's late results are dropped when its model call returns."""
        if self.cancel_event is None:
            return
        self.cancel_event.set()
        exchange, self.cancel_event, self.answering = self.answering, None, None
        if exchange is not None and not exchange.retired:
            exchange.stop()
            exchange.retired = True
            if exchange.answer is not None and exchange.conversation is not None:
                answer = exchange.answer
                self.app.record("assistant", answer.get("answer") or "", answer, exchange.conversation)
        self.notify("Answer cancelled")

    # --- views ------------------------------------------------------------------------------------
    def action_toggle_sources(self) -> None:
        panel = self.query_one(SourcesPanel)
        panel.display = not panel.display

    def action_toggle_reasoning(self) -> None:
        self.show_reasoning = not self.show_reasoning
        for exchange in self.query(Exchange):
            exchange.show_reasoning(self.show_reasoning)

    async def show_conversation(self, messages: list) -> None:
        """Replace what is shown with a stored conversation (a list of history.Message)."""
        conversation = self.query_one("#conversation")
        for shown in self.query(Exchange):
            shown.retired = True  # an answer still being written into it shows nothing more
        await self.query(Exchange).remove()
        self.query_one("#welcome").display = not messages
        exchange, citations = None, []
        for message in messages:
            if message.role == "user":
                exchange = Exchange(message.content)
                await conversation.mount(exchange)
                exchange.show_reasoning(self.show_reasoning)
            elif exchange is not None and message.answer:
                exchange.finish(message.answer)
                citations = message.answer.get("citations") or []
        self.query_one(SourcesPanel).show(citations)
        conversation.scroll_end(animate=False)
