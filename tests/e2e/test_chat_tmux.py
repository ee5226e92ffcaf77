"""`medassist chat` as a person uses it: the real command in a tmux terminal, the default Gemma model,
keys sent with send-keys and the screen read back with capture-pane."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_note

pytestmark = pytest.mark.slow
MEDASSIST = str(Path(sys.executable).parent / "medassist")


class Terminal:
    def __init__(self, session: str):
        self.session = session

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True, text=True,
                              check=True).stdout

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.session, "-l", text], check=True)

    def key(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.session, *keys], check=True)

    def wait_for(self, check, what: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if check(screen):
                return screen
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; the screen was:\n{self.screen()}")


@pytest.fixture(scope="module")
def terminal(gemma_models, tmp_path_factory):
    home = tmp_path_factory.mktemp("tmux-home")
    (home / "models").symlink_to(gemma_models)  # the converted default model, shared with the other slow tests
    session = f"medassist-test-{os.getpid()}"
    # COLUMNS/LINES, if an earlier test left them in the environment, would override the pane's size for the app.
    command = (f"env -u COLUMNS -u LINES MEDASSIST_HOME={shlex.quote(str(home))} TERM=xterm-256color "
               f"{shlex.quote(MEDASSIST)} chat --generate always")  # the model writes after the quotes
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "140", "-y", "45", command], check=True)
    terminal = Terminal(session)
    try:
        terminal.wait_for(lambda s: "Ask a medical question" in s, "the first paint", timeout=60)
        terminal.wait_for(lambda s: "ready ·" in s, "the model to load")
        yield terminal
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def test_question_gets_an_answer_with_a_numbered_source(terminal):
    terminal.type("What is the first-line treatment for hypertension?")
    terminal.key("Enter")
    # The route badge shows before the answer streams: wait for what comes last, the disclaimer under the
    # answer and the cited note's title in the sources panel.
    screen = terminal.wait_for(lambda s: "Check against current" in s and "Hypertension in adults" in s, "the answer")
    assert "route: treatment" in screen
    assert "[1]" in screen  # a citation marker in the answer and the numbered source list


def test_ingest_a_file_from_the_app(terminal, tmp_path):
    note = write_note(tmp_path, "kawasaki.md", "Kawasaki disease", "diagnosis", {
        "Criteria": "Kawasaki disease is diagnosed by fever for five days or more with four of five principal "
                    "features: conjunctival injection, oral changes, rash, extremity changes and neck lymph nodes."})
    terminal.key("F4")
    terminal.wait_for(lambda s: "Ingest reference documents" in s, "the ingest dialog", timeout=30)
    terminal.type(str(note))
    terminal.key("Enter")
    screen = terminal.wait_for(lambda s: "done:" in s, "the ingest to finish", timeout=300)
    assert "added" in screen and "kawasaki.md" in screen
    terminal.key("Escape")
    terminal.wait_for(lambda s: "Ingest reference documents" not in s, "the dialog to close", timeout=30)
