"""`medassist chat` driven through Textual's pilot: the real app, the real knowledge base over the starter
notes, and the tiny random model (answers are mostly extractive with it; the mechanics are the point)."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import tomllib

import pytest
from conftest import write_note
from textual.geometry import Region

from assistant.backends import base as backends_base
from assistant.backends.base import BackendError
from assistant.config import load_config
from assistant.tui.app import MedassistApp
from assistant.tui.widgets.exchange import Exchange

SIZE = (120, 40)


@pytest.fixture
def home(starter_home, tmp_path):
    """A home with the starter notes already indexed (a copy: each test may change it)."""
    copy = tmp_path / "chat-home"
    shutil.copytree(starter_home, copy)
    return copy


def make_app(home, tiny_model, keep_history=True, **settings):
    return MedassistApp(load_config(home, model=str(tiny_model), **settings), keep_history=keep_history)


async def until(pilot, condition, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def last_exchange(app) -> Exchange | None:
    exchanges = app.chat.query(Exchange)
    return exchanges.last() if exchanges else None


async def ask(pilot, app, question: str) -> dict:
    app.chat.query_one("#question").value = question
    await pilot.press("enter")
    await until(pilot, lambda: last_exchange(app) is not None and last_exchange(app).answer is not None)
    await until(pilot, lambda: not app.chat.busy)
    return last_exchange(app).answer


async def test_typed_question_gets_a_cited_answer_and_the_sources_panel(home, tiny_model):
    app = make_app(home, tiny_model)
    async with app.run_test(size=SIZE) as pilot:
        assert app.chat.query_one("#question").has_focus
        await pilot.press(*["space" if c == " " else c for c in "first line treatment for hypertension"])
        await pilot.press("enter")
        await until(pilot, lambda: last_exchange(app) is not None and last_exchange(app).answer is not None)
        await until(pilot, lambda: not app.chat.busy)
        answer = last_exchange(app).answer
        assert answer["route"] == "treatment" and answer["citations"]
        shown = last_exchange(app).query_one(".answer").source
        assert "[1]" in shown or "[2]" in shown
        assert "route: treatment" in str(last_exchange(app).query_one(".badge").render())
        sources = app.chat.query_one("#source-list")
        assert sources.option_count == len(answer["citations"])
        sources.focus()
        await pilot.press("down")
        passage = str(app.chat.query_one("#passage").render())
        assert answer["citations"][1]["text"][:40] in passage.replace("\n", " ") or \
            answer["citations"][1]["title"] in passage
        status = app.chat.query_one("StatusBar")
        assert status.state == "ready" and "transformers" in status.model and status.tokens_per_s > 0


async def test_the_loader_can_outlive_the_chat_screen(home, tiny_model):
    """Quitting while the model loads takes the chat screen away while the loader still reports progress."""
    app = make_app(home, tiny_model)
    async with app.run_test(size=SIZE) as pilot:
        await app.pop_screen()
        agent = await asyncio.to_thread(app.wait_for_agent, lambda text: None)
        await pilot.pause()
        assert agent is not None and app.load_error == ""


async def test_reasoning_is_hidden_until_ctrl_r(home, tiny_model):
    app = make_app(home, tiny_model)
    async with app.run_test(size=SIZE) as pilot:
        answer = await ask(pilot, app, "How is community-acquired pneumonia treated?")
        reasoning = last_exchange(app).query_one(".reasoning")
        assert answer["reasoning"] and reasoning.collapsed
        await pilot.press("ctrl+r")
        assert not reasoning.collapsed
        assert answer["reasoning"][:20] in str(last_exchange(app).query_one(".reasoning-text").render())
        await pilot.press("ctrl+r")
        assert reasoning.collapsed


async def start_a_long_answer(app, pilot) -> None:
    """Ask, and wait until the model is well into its reasoning (it is allowed thousands of tokens)."""
    app.chat.query_one("#question").value = "What is the dose of metformin?"
    await pilot.press("enter")
    await until(pilot, lambda: last_exchange(app) is not None and len(last_exchange(app).reasoning_text) > 20)


async def test_escape_cancels_a_long_generation(home, tiny_model):
    app = make_app(home, tiny_model, max_new_tokens=6000, max_think_tokens=5000)
    async with app.run_test(size=SIZE) as pilot:
        await start_a_long_answer(app, pilot)
        await pilot.press("escape")
        await until(pilot, lambda: last_exchange(app).answer is not None, timeout=30)
        assert "cancelled" in str(last_exchange(app).query_one(".badge").render())
        assert app.count_tokens(last_exchange(app).answer["reasoning"]) < 5000


async def test_the_evidence_is_on_screen_while_the_model_still_writes(home, tiny_model):
    """Evidence first: the quoted answer and its sources show before the model's answer is done."""
    app = make_app(home, tiny_model, max_new_tokens=6000, max_think_tokens=5000)
    async with app.run_test(size=SIZE) as pilot:
        app.chat.query_one("#question").value = "What is the dose of metformin?"
        await pilot.press("enter")
        await until(pilot, lambda: last_exchange(app) is not None and last_exchange(app).evidence is not None)
        exchange = last_exchange(app)
        assert exchange.answer is None and app.chat.busy  # the model has not finished
        assert exchange.query_one(".answer").source.startswith("From the sources:")
        assert "Metformin ›" in exchange.query_one(".answer").source
        assert "the model is writing" in str(exchange.query_one(".badge").render())
        assert app.chat.query_one("#source-list").option_count == len(exchange.evidence["citations"])
        await pilot.press("escape")
        await until(pilot, lambda: exchange.answer is not None, timeout=30)
        assert exchange.answer["mode"] == "extractive" and "From the sources:" in exchange.query_one(".answer").source
        assert not exchange.query_one(".draft").display


async def test_red_flags_put_an_emergency_notice_above_the_answer(home, tiny_model):
    app = make_app(home, tiny_model)
    async with app.run_test(size=SIZE) as pilot:
        answer = await ask(pilot, app, "Crushing chest pain spreading to my left arm and I am sweating, what now?")
        notice = last_exchange(app).query_one(".emergency")
        assert answer["safety"]["red_flags"] and notice.display
        assert str(notice.render()) == answer["safety"]["emergency_notice"]
        assert answer["safety"]["disclaimer"] in str(last_exchange(app).query_one(".disclaimer").render())


async def test_unsupported_sentences_are_marked():
    from textual.app import App

    class One(App):
        def compose(self):
            yield Exchange("q")

    answer = {"route": "medication", "route_confidence": 0.9, "mode": "generated", "reasoning": "",
              "answer": "Apixaban 5 mg twice daily [1]. It cures everything. *[unsupported: no citation]*",
              "citations": [{"n": 1}], "safety": {"disclaimer": "d"},
              "sentences": [{"text": "a", "citations": [1], "supported": True},
                            {"text": "b", "citations": [], "supported": False}]}
    app = One()
    async with app.run_test() as pilot:
        exchange = app.query_one(Exchange)
        exchange.finish(answer)
        await pilot.pause()
        assert exchange.has_class("has-unsupported")
        assert "1 unsupported sentence" in str(exchange.query_one(".badge").render())
        assert "*[unsupported: no citation]*" in exchange.query_one(".answer").source


async def test_chats_are_saved_resumed_renamed_exported_and_deleted(home, tiny_model):
    app = make_app(home, tiny_model)
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, app, "What is the target blood pressure?")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert not app.chat.query(Exchange)
        await pilot.press("ctrl+l")
        chats = app.screen.query_one("#chats")
        assert chats.option_count == 1
        await pilot.press("r")
        app.screen.query_one("#prompt-input").value = "BP targets"
        await pilot.press("enter")
        await pilot.pause()
        assert app.history.conversations()[0].title == "BP targets"
        await pilot.press("e")
        export = (home / "exports" / f"chat-{app.history.conversations()[0].id}.md").read_text()
        assert export.startswith("# BP targets") and "What is the target blood pressure?" in export
        assert "**Sources**" in export and "1. " in export
        await pilot.press("enter")  # resume
        await pilot.pause()
        assert last_exchange(app).question == "What is the target blood pressure?"
        assert last_exchange(app).answer["citations"]
        await pilot.press("ctrl+l")
        await pilot.press("d", "n")  # deleting asks first
        assert len(app.history.conversations()) == 1
        await pilot.press("d", "y")
        assert app.history.conversations() == []
    reopened = make_app(home, tiny_model)
    async with reopened.run_test(size=SIZE):
        assert reopened.history.conversations() == []


async def test_history_persists_across_sessions_and_no_history_keeps_nothing(home, tiny_model):
    app = make_app(home, tiny_model)
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, app, "Which drugs interact with warfarin?")
    from assistant.history import History

    stored = History(home / "history.sqlite3")
    assert [c.title for c in stored.conversations()] == ["Which drugs interact with warfarin?"]
    assert [m.role for m in stored.messages(stored.conversations()[0].id)] == ["user", "assistant"]
    stored.close()
    (home / "history.sqlite3").unlink()
    private = make_app(home, tiny_model, keep_history=False)
    async with private.run_test(size=SIZE) as pilot:
        await ask(pilot, private, "Which drugs interact with warfarin?")
        assert private.history.conversations()  # kept in memory for this session
    assert not (home / "history.sqlite3").exists()


async def test_settings_are_applied_and_saved_to_config(home, tiny_model):
    app = make_app(home, tiny_model)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.agent is not None)
        await pilot.press("f2")
        app.screen.query_one("#k").value = "3"
        app.screen.query_one("#use_rag").value = False
        await pilot.click("#save")
        await pilot.pause()
        saved = tomllib.loads((home / "config.toml").read_text())
        assert saved["k"] == 3 and saved["use_rag"] is False
        answer = await ask(pilot, app, "What is sepsis?")
        assert answer["mode"] == "unsourced" and not answer["citations"]
    assert load_config(home).k == 3


async def test_ingest_from_the_app_while_the_chat_keeps_working(home, tiny_model, tmp_path):
    note = write_note(tmp_path / "mine", "kawasaki.md", "Kawasaki disease", "diagnosis", {
        "Criteria": "Kawasaki disease is diagnosed by fever for five days or more with four of five principal "
                    "features: conjunctival injection, oral changes, rash, extremity changes and cervical lymph nodes."})
    app = make_app(home, tiny_model)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.agent is not None)
        await pilot.press("f4")
        app.screen.query_one("#ingest-path").value = str(note.parent)
        await pilot.press("enter")
        await until(pilot, lambda: any(line.startswith("done:") for line in app.ingest_lines))
        log = "\n".join(app.screen.query_one("#ingest-log").lines)
        assert "added" in log and "kawasaki.md" in log
        await pilot.press("escape")
        answer = await ask(pilot, app, "How is Kawasaki disease diagnosed?")
        assert any(c["title"] == "Kawasaki disease" for c in answer["citations"])


async def test_an_ingest_waiting_for_another_process_says_so(home, tiny_model, tmp_path):
    """`medassist ingest` in another terminal holds the write lock: the chat's ingest waits, and says so."""
    import fcntl

    from assistant.tui.widgets.status import StatusBar

    note = write_note(tmp_path / "mine", "gout.md", "Gout flare", "treatment", {
        "Treatment": "A gout flare is treated with an NSAID, colchicine or a short course of prednisolone."})
    app = make_app(home, tiny_model)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.agent is not None)
        with open(home / "write.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # an open file of its own: flock makes this call wait like another process
            app.ingest([str(note.parent)])
            await until(pilot, lambda: any("waiting for it to finish" in line for line in app.ingest_lines))
            assert "another medassist process" in app.chat.query_one(StatusBar).state
            await pilot.pause(0.5)
            assert not any(line.startswith("done:") for line in app.ingest_lines)  # it really waits
        await until(pilot, lambda: any(line.startswith("done:") for line in app.ingest_lines))
        assert any("added" in line and "gout.md" in line for line in app.ingest_lines)


def shown(widget) -> str:
    """The text a widget puts on screen: its wrapped lines joined, its border dropped."""
    text = " ".join(strip.text for strip in widget.render_lines(Region(0, 0, *widget.outer_size)))
    return " ".join(text.translate({ord(c): " " for c in "▊▎▔▁"}).split())


async def test_brackets_in_questions_titles_and_chat_names_are_text_not_markup(home, tiny_model, tmp_path):
    """`[/b]` in a question, a document title or a chat name crashed the app (MarkupError); `[draft notes]`
    vanished from what was shown. What users and documents write is text, never markup."""
    title = "Kawasaki disease [/b] [draft notes]"
    note = write_note(tmp_path / "mine", "kawasaki.md", title, "diagnosis", {
        "Criteria": "Kawasaki disease is diagnosed by fever for five days or more with four of five principal "
                    "features: conjunctival injection, oral changes, rash, extremity changes and cervical lymph nodes."})
    app = make_app(home, tiny_model, generate="never")
    async with app.run_test(size=SIZE) as pilot:
        app.ingest([str(note)])
        await until(pilot, lambda: any(line.startswith("done:") for line in app.ingest_lines))
        question = "what does [/b] mean in Kawasaki disease [draft notes]?"
        answer = await ask(pilot, app, question)
        assert str(last_exchange(app).query_one(".question").render()) == f"You  {question}"
        assert any(c["title"] == title for c in answer["citations"])
        assert title in shown(app.chat.query_one("#source-list"))
        await pilot.press("ctrl+l")
        await until(pilot, lambda: question in shown(app.screen.query_one("#chats")), timeout=10)
        await pilot.press("escape")
        app.rename_chat()  # its notice quotes the new name
        await pilot.pause()
        app.screen.query_one("#prompt-input").value = "[/INST] notes [b]"
        await pilot.press("enter")
        await pilot.press("ctrl+l")
        await until(pilot, lambda: "[/INST] notes [b]" in shown(app.screen.query_one("#chats")), timeout=10)


class FailingServer:
    """A model backend that fails mid-answer, as a server does when it drops the connection; `fail = False`:
    it has come back."""
    name = model_name = "failing-server"
    eos_token = ""
    fail = True

    def __init__(self, **_options):
        pass

    def generate(self, prompt, settings, stop=None, cancel=None):
        yield "The first words"
        if FailingServer.fail:
            raise BackendError("the model server closed the connection")
        yield " and the rest."


async def test_a_backend_failing_mid_answer_is_shown_and_the_chat_goes_on(home, monkeypatch):
    monkeypatch.setitem(backends_base._MODULES, "failing", __name__)
    monkeypatch.setitem(backends_base._REGISTRY, "failing", FailingServer)
    monkeypatch.setattr(FailingServer, "fail", True)
    app = MedassistApp(load_config(home, backend="failing"))
    async with app.run_test(size=SIZE) as pilot:
        app.chat.query_one("#question").value = "What is the first-line treatment for hypertension?"
        await pilot.press("enter")
        await until(pilot, lambda: last_exchange(app) is not None and not app.chat.busy)
        failed = last_exchange(app)
        assert "the model server closed the connection" in str(failed.query_one(".badge").render())
        assert failed.answer["mode"] == "extractive" and failed.answer["citations"]  # the evidence stands
        assert any("closed the connection" in str(n.message) for n in app._notifications)
        FailingServer.fail = False
        answer = await ask(pilot, app, "What is the dose of metformin?")
        assert answer["model"] == "failing-server"
        assert "failed" not in str(last_exchange(app).query_one(".badge").render())
        assert [m.role for m in app.history.messages(app.conversation_id)] == ["user", "user", "assistant"]


class ThinkingServer(FailingServer):
    """A server that takes its time before the first token (a big model on a busy server), until released."""
    name = model_name = "thinking-server"
    released = threading.Event()

    def generate(self, prompt, settings, stop=None, cancel=None):
        ThinkingServer.released.wait(60)
        yield "Late words."


async def test_escape_cancels_before_the_first_token(home, monkeypatch):
    monkeypatch.setitem(backends_base._MODULES, "thinking", __name__)
    monkeypatch.setitem(backends_base._REGISTRY, "thinking", ThinkingServer)
    app = MedassistApp(load_config(home, backend="thinking"))
    try:
        async with app.run_test(size=SIZE) as pilot:
            app.chat.query_one("#question").value = "What is the first-line treatment for hypertension?"
            await pilot.press("enter")
            await until(pilot, lambda: last_exchange(app) is not None and last_exchange(app).evidence is not None)
            exchange = last_exchange(app)
            await pilot.press("escape")
            await until(pilot, lambda: not app.chat.busy, timeout=5)  # at once, not when the server answers
            assert "cancelled" in str(exchange.query_one(".badge").render())
            assert exchange.answer["answer"] == exchange.evidence["answer"]  # the quotes stand, and are kept
            assert [m.role for m in app.history.messages(app.conversation_id)] == ["user", "assistant"]
            ThinkingServer.released.set()  # the server answers late: nothing changes on screen
            await pilot.pause(0.5)
            assert "Late words" not in exchange.draft_text + exchange.reasoning_text
    finally:
        ThinkingServer.released.set()


async def test_deleting_a_chat_while_its_answer_streams(home, tiny_model):
    app = make_app(home, tiny_model, max_new_tokens=6000, max_think_tokens=5000)
    async with app.run_test(size=SIZE) as pilot:
        await start_a_long_answer(app, pilot)
        await pilot.press("ctrl+l", "d", "y")
        await pilot.press("escape", "escape")  # close the list; Esc on the chat cancels an answer still running
        await until(pilot, lambda: not app.chat.busy, timeout=30)
        assert app.history.conversations() == [] and not app.chat.query(Exchange)  # its answer was stopped


async def test_missing_model_is_reported_and_answers_still_quote_the_sources(home, tmp_path):
    app = MedassistApp(load_config(home, model=str(tmp_path / "no-such-model")))
    async with app.run_test(size=SIZE) as pilot:
        answer = await ask(pilot, app, "What is the first-line treatment for hypertension?")
        state = app.chat.query_one("StatusBar").state
        assert state.startswith("no model") and "no-such-model" in state
        assert answer["mode"] == "extractive" and answer["citations"]


async def test_help_lists_every_key_and_the_palette_has_every_action(home, tiny_model):
    app = make_app(home, tiny_model)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        text = app.screen.query_one("Markdown").source
        for key in ["Ctrl+N", "Ctrl+L", "Ctrl+O", "Ctrl+R", "F2", "F4", "Ctrl+P", "Esc", "F1"]:
            assert f"| {key}" in text
        await pilot.press("escape")
        titles = {command.title for command in app.get_system_commands(app.screen)}
        assert {"Ingest files", "Settings", "Export chat", "Rename chat", "Delete chat", "Chats"} <= titles


# --- snapshots (SVG, in tests/assistant/__snapshots__; after an intended change: pytest --snapshot-update) ------
async def _settled(pilot, app, question: str | None = None) -> None:
    """Wait for the services (and an answer), then pin what varies between runs: paths and speed. The loader
    sets its last status after the agent exists: waiting for it to finish keeps that from landing after the pin
    (seen under load: the settings snapshot then showed the loader's status)."""
    await until(pilot, lambda: app.agent is not None and app._services_ready.is_set())
    if question:
        await ask(pilot, app, question)
        await pilot.press("ctrl+o")  # the passage panel shows checkout paths
    status = app.chat.query_one("StatusBar")
    status.state, status.model, status.tokens_per_s = "ready", "tiny (transformers)", 0.0
    await pilot.pause()


@pytest.fixture(scope="module")
def float32_home(tmp_path_factory):
    """The starter notes indexed, and later searched, in float32: bf16 rounds differently on different CPUs (AMX or
    AVX512-BF16), enough to swap two near-tied quotes in a screenshot; float32 gives the same order on each."""
    from index import KnowledgeBase
    from index.embed import Embedder

    home = tmp_path_factory.mktemp("float32-home")
    KnowledgeBase(home, embedder=Embedder(compute_dtype="float32")).ensure_starter()
    return home


def test_snapshot_chat_with_an_answer(float32_home, tmp_path, tiny_model, snap_compare):
    shutil.copytree(float32_home, tmp_path / "home")
    app = make_app(tmp_path / "home", tiny_model, compute_dtype="float32")
    assert snap_compare(app, terminal_size=SIZE,
                        run_before=lambda pilot: _settled(pilot, app, "What is the first-line treatment for hypertension?"))


def test_snapshot_help(home, tiny_model, snap_compare):
    app = make_app(home, tiny_model)
    assert snap_compare(app, press=["f1"], terminal_size=SIZE, run_before=lambda pilot: _settled(pilot, app))


def test_snapshot_settings(home, tiny_model, snap_compare):
    app = MedassistApp(load_config(home, backend="openai", base_url="http://127.0.0.1:9/v1", k=4))
    assert snap_compare(app, press=["f2"], terminal_size=SIZE, run_before=lambda pilot: _settled(pilot, app))
