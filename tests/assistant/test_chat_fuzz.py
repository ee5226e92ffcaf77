"""Fuzzing the chat's question box with hostile strings (tests/hostile.py): Rich/Textual markup, control
characters, huge lines, deep nesting. Each is answered, shown as typed and listed as a chat title, and the app
keeps running. A short run for CI; benchmarks/fuzz_inputs.py asks hundreds."""

from __future__ import annotations

import shutil
import time

from hostile import ask_in_chat, fuzz_chat
from hypothesis import HealthCheck, settings

from assistant.config import load_config
from assistant.tui.app import MedassistApp


async def test_a_huge_paste_is_cut_to_fit_the_question_box_and_answered(starter_home, tmp_path):
    """Found by the fuzz test: Rich measures every character of the box on each redraw, slowly for zero-width
    ones, so a paste of 150,000 NULs (a file's bytes, say) froze the screen for minutes; control characters
    reached the screen as they were (an escape sequence is obeyed by the terminal)."""
    from textual import events

    from assistant.tui.widgets.question import QuestionBox

    home = tmp_path / "chat-home"
    shutil.copytree(starter_home, home)
    app = MedassistApp(load_config(home, generate="never"))
    async with app.run_test(size=(120, 40)) as pilot:
        box = app.chat.query_one("#question")
        box.post_message(events.Paste("what is gout? " + "\x00" * 150_000 + "\nsecond line"))
        await pilot.pause()
        assert box.value.startswith("what is gout? ") and len(box.value) == len("what is gout? ")
        box.value = ""
        box.post_message(events.Paste("what is gout? " + "x" * 150_000 + "\nsecond line"))
        await pilot.pause()
        assert box.value.startswith("what is gout? x") and len(box.value) == QuestionBox.MAX_CHARS
        box.value = ""
        box.post_message(events.Paste("gout\x1b[2J\x9b2J\x07\x00\tflare"))  # the terminal would obey these
        await pilot.pause()
        assert box.value == "gout[2J2J flare"
        await ask_in_chat(pilot, app, "and what treats a gout flare?")  # the cut paste is replaced, the app answers


async def test_hostile_questions_are_answered_and_shown_as_typed(starter_home, tmp_path):
    home = tmp_path / "chat-home"
    shutil.copytree(starter_home, home)
    app = MedassistApp(load_config(home, generate="never"))  # the evidence reader answers: no model to load
    async with app.run_test(size=(120, 40)) as pilot:
        await fuzz_chat(app, pilot, settings(max_examples=40, deadline=None, database=None,
                                             suppress_health_check=list(HealthCheck)))


def test_a_long_pasted_word_is_routed_at_once(embedder):
    """Found by the fuzz test: the drug-stem cue had no leading \\b, so the regex tried every start inside a word:
    O(n^2) in C with the GIL held, and a 50,000-character word froze the whole chat, screen included, for minutes."""
    from assistant.router import Router

    router = Router(embedder)
    router.route("warm up: which dose of ramipril?")
    start = time.perf_counter()
    router.route("x" * 20_000 + " ramipril")
    assert time.perf_counter() - start < 3
