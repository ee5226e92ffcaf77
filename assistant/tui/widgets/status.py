"""The line above the key bar: what is loading or running, the model and backend, and the last tokens/s."""

from __future__ import annotations

from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static


class StatusBar(Static):
    state = reactive("starting…")
    model = reactive("")
    tokens_per_s = reactive(0.0)

    def render(self) -> Content:
        parts = [self.state]
        if self.model:
            parts.append(self.model)
        if self.tokens_per_s:
            parts.append(f"{self.tokens_per_s:.1f} tok/s")
        return Content(" · ".join(parts))  # text, not markup: states quote error messages and paths
