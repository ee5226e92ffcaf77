"""One question and its answer: emergency notice, route badge, collapsible reasoning, the answer as Markdown.

Evidence first: the quoted evidence answer fills the answer as soon as it is read; the model's text then
streams below it as a draft, and the checked answer replaces both when it is done."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Collapsible, Markdown, Static


class Exchange(Vertical):
    """Built empty when a question is sent, filled as the answer streams in, finished with the checked Answer."""

    def __init__(self, question: str, **kwargs):
        super().__init__(**kwargs)
        self.question = question
        self.answer: dict | None = None  # the Answer (as_dict) once finished
        self.reasoning_text = ""
        self.draft_text = ""
        self.evidence: dict | None = None  # the evidence answer (as_dict), shown while the model writes
        # Its answer's worker shows nothing more once it is retired: cancelled, or taken off the screen (a new chat,
        # its chat deleted) while the answer was written.
        self.retired = False
        self.conversation: int | None = None  # where its question is stored

    def compose(self) -> ComposeResult:
        # What users, documents and errors write is text, never markup: "[/b]" in a question would not parse
        yield Static(Content.assemble(("You", "bold"), "  ", self.question), classes="question")
        yield Static("", classes="emergency", markup=False)
        yield Static("routing and searching…", classes="badge", markup=False)
        with Collapsible(title="Reasoning", collapsed=True, classes="reasoning"):
            yield Static("", classes="reasoning-text", markup=False)
        yield Markdown("", classes="answer")
        yield Static("", classes="draft", markup=False)  # the model's text while it streams, before its check
        yield Static("", classes="disclaimer", markup=False)

    def show_reasoning(self, show: bool) -> None:
        self.query_one(Collapsible).collapsed = not show

    def add_reasoning(self, piece: str) -> None:
        self.reasoning_text += piece
        self.query_one(".reasoning-text", Static).update(self.reasoning_text)

    def show_evidence(self, answer: dict, model_writing: bool) -> None:
        """The quoted evidence answer, at once; the model's answer may replace it when it is done."""
        self.evidence = answer
        self.show_safety(answer)
        self.query_one(".answer", Markdown).update(answer.get("answer") or "")
        self.set_status(f"route: {answer['route']} {answer['route_confidence']:.0%} · quoted from "
                        f"{len(answer.get('citations') or [])} sources"
                        + (" · the model is writing…" if model_writing else ""))

    def add_answer(self, piece: str) -> None:
        """A piece of the model's answer, shown as a draft under the evidence until it is checked."""
        self.draft_text += piece
        draft = self.query_one(".draft", Static)
        draft.display = True
        draft.update(f"Model draft (not yet checked): {self.draft_text.strip()}")

    def set_status(self, text: str) -> None:
        self.query_one(".badge", Static).update(text)

    def finish(self, answer: dict, cancelled: bool = False, error: str | None = None) -> None:
        """Replace the streamed text with the checked answer (valid [n] markers, unsupported sentences marked);
        `error`: why the model stopped before its answer (the evidence answer stands)."""
        self.answer = answer
        safety = self.show_safety(answer)
        self.query_one(".draft", Static).display = False
        unsupported = sum(not s["supported"] for s in answer.get("sentences") or [])
        badge = (f"route: {answer['route']} {answer['route_confidence']:.0%} · {answer['mode']}"
                 + (f" · {len(answer['citations'])} sources" if answer.get("citations") else "")
                 + (f" · {unsupported} unsupported sentence{'s' * (unsupported != 1)}" if unsupported else "")
                 + (" · cancelled" if cancelled else "") + (f" · the model failed: {error}" if error else ""))
        self.set_status(badge)
        self.set_class(unsupported > 0, "has-unsupported")
        self.reasoning_text = answer.get("reasoning") or ""
        self.query_one(".reasoning-text", Static).update(self.reasoning_text or "(no reasoning)")
        self.query_one(".answer", Markdown).update(answer.get("answer") or "")
        self.query_one(".disclaimer", Static).update(safety.get("disclaimer") or "")

    def stop(self, error: str | None = None) -> None:
        """The answer stopped before the model's was checked, cancelled or on `error`: the evidence, when it was
        read, stands as the answer, with the reasoning the model had written."""
        self.set_class(bool(error), "failed")
        if self.evidence is not None:
            self.finish({**self.evidence, "reasoning": self.reasoning_text}, cancelled=not error, error=error)
        else:
            self.query_one(".draft", Static).display = False
            self.set_status(f"error: {error}" if error else "cancelled")

    def show_safety(self, answer: dict) -> dict:
        safety = answer.get("safety") or {}
        notice = self.query_one(".emergency", Static)
        notice.update(safety.get("emergency_notice") or "")
        notice.display = bool(safety.get("emergency_notice"))
        return safety

    def on_mount(self) -> None:
        self.query_one(".emergency", Static).display = False
        self.query_one(".draft", Static).display = False
