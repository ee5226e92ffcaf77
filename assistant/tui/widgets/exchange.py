"""One question and its answer: emergency notice, route badge, collapsible reasoning, the answer as Markdown."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Collapsible, Markdown, Static


class Exchange(Vertical):
    """Built empty when a question is sent, filled as the answer streams in, finished with the checked Answer."""

    def __init__(self, question: str, **kwargs):
        super().__init__(**kwargs)
        self.question = question
        self.answer: dict | None = None  # the Answer (as_dict) once finished
        self.reasoning_text = ""

    def compose(self) -> ComposeResult:
        yield Static(f"[b]You[/b]  {self.question}", classes="question", markup=True)
        yield Static("", classes="emergency")
        yield Static("routing and searching…", classes="badge")
        with Collapsible(title="Reasoning", collapsed=True, classes="reasoning"):
            yield Static("", classes="reasoning-text", markup=False)
        yield Markdown("", classes="answer")
        yield Static("", classes="disclaimer")

    def show_reasoning(self, show: bool) -> None:
        self.query_one(Collapsible).collapsed = not show

    def add_reasoning(self, piece: str) -> None:
        self.reasoning_text += piece
        self.query_one(".reasoning-text", Static).update(self.reasoning_text)

    def add_answer(self, piece: str):
        return self.query_one(".answer", Markdown).append(piece)

    def set_status(self, text: str) -> None:
        self.query_one(".badge", Static).update(text)

    def finish(self, answer: dict, cancelled: bool = False) -> None:
        """Replace the streamed text with the checked answer (valid [n] markers, unsupported sentences marked)."""
        self.answer = answer
        safety = answer.get("safety") or {}
        notice = self.query_one(".emergency", Static)
        notice.update(safety.get("emergency_notice") or "")
        notice.display = bool(safety.get("emergency_notice"))
        unsupported = sum(not s["supported"] for s in answer.get("sentences") or [])
        badge = (f"route: {answer['route']} {answer['route_confidence']:.0%} · {answer['mode']}"
                 + (f" · {len(answer['citations'])} sources" if answer.get("citations") else "")
                 + (f" · {unsupported} unsupported sentence{'s' * (unsupported != 1)}" if unsupported else "")
                 + (" · cancelled" if cancelled else ""))
        self.set_status(badge)
        self.set_class(unsupported > 0, "has-unsupported")
        self.reasoning_text = answer.get("reasoning") or ""
        self.query_one(".reasoning-text", Static).update(self.reasoning_text or "(no reasoning)")
        self.query_one(".answer", Markdown).update(answer.get("answer") or "")
        self.query_one(".disclaimer", Static).update(safety.get("disclaimer") or "")

    def on_mount(self) -> None:
        self.query_one(".emergency", Static).display = False
