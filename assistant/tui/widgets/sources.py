"""The numbered citations of the selected answer; choosing one shows its passage and where it came from."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


def describe(citation: dict) -> str:
    where = " · ".join(x for x in (citation.get("section"), f"p. {citation['page']}" if citation.get("page") else "") if x)
    return f"[{citation['n']}] {citation['title']}" + (f" — {where}" if where else "")


class SourcesPanel(Vertical):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.citations: list[dict] = []

    def compose(self) -> ComposeResult:
        yield Static("Sources", classes="panel-title")
        yield OptionList(id="source-list", markup=False)  # document titles are text, not markup
        with VerticalScroll(id="passage-scroll"):
            yield Static("Ask a question; its sources appear here.", id="passage", markup=False)

    def show(self, citations: list[dict]) -> None:
        self.citations = citations
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options([Option(describe(c), id=str(c["n"])) for c in citations])
        if citations:
            options.highlighted = 0
        else:
            self.query_one("#passage", Static).update("No sources for this answer.")

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        citation = next(c for c in self.citations if str(c["n"]) == event.option.id)
        self.query_one("#passage", Static).update(
            f"{describe(citation)}\n{citation['source']}\nscore {citation['score']:.4f}"
            + (f" · relevance {citation['dense_score']:.2f}" if citation.get("dense_score") is not None else "")
            + f"\n\n{citation['text']}")
