"""The question box: an Input that holds at most `MAX_CHARS` characters of text, and cuts a longer paste to fit."""

from __future__ import annotations

from textual.widgets import Input

from assistant.safety import MAX_QUESTION_CHARS
from corpus.loaders import clean_text


class QuestionBox(Input):
    # Rich measures every character of the box on each redraw, slowly for zero-width ones: a paste of 150,000
    # NULs (a file's bytes, say) froze the screen for minutes. The agent reads no longer question anyway.
    MAX_CHARS = MAX_QUESTION_CHARS

    def __init__(self, **kwargs):
        super().__init__(max_length=self.MAX_CHARS, **kwargs)

    def replace(self, text: str, start: int, end: int) -> None:
        """Every edit (typing, a paste) comes here: control characters go (the terminal would obey an escape
        sequence when the question is shown), and what does not fit is cut, with a notice, not refused whole."""
        text = clean_text(text).replace("\t", " ").replace("\n", " ")
        start, end = sorted((max(0, start), min(len(self.value), end)))
        room = self.MAX_CHARS - (len(self.value) - (end - start))
        if len(text) > room:
            text = text[:max(0, room)]
            self.notify(f"The question box holds {self.MAX_CHARS:,} characters: the rest was cut.", severity="warning")
        super().replace(text, start, end)
