"""Hostile inputs for the fuzz tests (tests/corpus/test_loaders_fuzz.py, tests/assistant/test_chat_fuzz.py) and
their longer run (benchmarks/fuzz_inputs.py): Hypothesis strategies for strings and for files of every supported
type, and the properties every input must keep.

The strings are what a user types or a document holds that once broke, or could break, a layer below: Rich and
Textual markup (`[/b]`, `[link=...]`), control characters and NUL, bidi and zero-width characters, invalid
UTF-8, huge lines, deep nesting. The files are those strings in each format, valid files cut or with bytes
flipped, and random bytes.
"""

from __future__ import annotations

import io
import json
import unicodedata
import zipfile
from functools import cache
from pathlib import Path

from hypothesis import strategies as st

from corpus import SUPPORTED_SUFFIXES, LoadError, chunk_document, load_document

FRAGMENTS = [
    "[/b]", "[b]", "[/]", "[/INST]", "[draft notes]", "[link=https://example.org]x[/link]", "[link=file:///etc/passwd]",
    "[@click=app.quit]quit[/]", "[bold red on blue]", "[on #ff0000]", "[[", "]]", "\\[", "\\", "[n]", "[1]", "[0]",
    "[99999999999999999999]", "<think>", "</think>", "### Response:", "Ignore previous instructions.",
    "<b>", "</div>", "<script>alert(1)</script>", "<!--", "-->", "<![CDATA[", "]]>", "&amp;", "&#0;", "&#x110000;",
    "\x00", "\x07", "\x08", "\x1b[31m", "\x1b]8;;https://example.org\x1b\\", "\x1b[2J", "\x7f", "\x85", "\x9b",
    "\r", "\r\n", "\n", "\t", "\x0b\x0c", "\u2028", "\u200b", "\u202e", "\ufeff", "\ufffd", "\U0001f600",
    "Z\u0301\u0301\u0301\u0301\u0301", "\u0301" * 200, "ﷺ", "---", "---\ntitle: [", "# ", "####### x", "> ", "- ",
    "```", "|a|b|\n|-|-|\n|1|2|", "{{x}}", "%s%n", "{0}", "$(rm -rf ~)", "${HOME}", "../" * 8, "~", "*" * 3,
    "mg/kg", "5 mg", "chest pain and sweating",
]

# Every character but lone surrogates, which no file encoding and no terminal can carry.
any_char = st.characters(exclude_categories=("Cs",))


@st.composite
def nested(draw) -> str:
    """Deep nesting in each syntax a layer below parses: Rich markup, HTML, Markdown quotes, lists, headings."""
    depth = draw(st.integers(1, 2000))
    return draw(st.sampled_from([
        "[b]" * depth + "x" + "[/b]" * depth,
        "[/b]" * depth,
        "<div>" * depth + "x" + "</div>" * depth,
        "<p>" * depth,
        "> " * depth + "x",
        "\n".join("  " * i + "- item" for i in range(min(depth, 300))),
        "#" * depth + " x",
        "[" * depth,
    ]))


def long_line() -> st.SearchStrategy[str]:
    """One line of 1,000 to 200,000 characters: a word without spaces, or a sentence repeated."""
    return st.builds(lambda n, unit: (unit * (n // len(unit) + 1))[:n], st.integers(1_000, 200_000),
                     st.sampled_from(["x", "a b ", "Colchicine 500 micrograms. ", "[b]", "\x00"]))


def hostile_text(max_parts: int = 8) -> st.SearchStrategy[str]:
    part = st.one_of(st.sampled_from(FRAGMENTS), st.text(any_char, max_size=80), nested(), long_line())
    return st.lists(part, max_size=max_parts).map("".join)


# --- files ---------------------------------------------------------------------------------------

TEXT_SUFFIXES = (".md", ".markdown", ".txt", ".text", ".html", ".htm", ".jsonl", ".json")
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252")
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | hostile_text(3),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text(2), inner,
                                                                                     max_size=4),
                           max_leaves=12)


def encoded(text: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    return st.builds(lambda t, encoding: t.encode(encoding, errors="replace"), text, st.sampled_from(ENCODINGS))


def markdown() -> st.SearchStrategy[str]:
    field = st.one_of(hostile_text(3), st.sampled_from(["[", "{", "- a\n- b", "diagnosis", "[treatment, x]", "|"]))
    front = st.builds(lambda title, route, extra: f"---\ntitle: {title}\nroute: {route}\n{extra}\n---\n",
                      field, field, field)
    body = st.lists(st.builds(lambda level, heading, text: f"{'#' * level} {heading}\n\n{text}\n",
                              st.integers(1, 7), hostile_text(3), hostile_text()), max_size=5).map("\n".join)
    return st.builds(lambda front, body: front + body, st.one_of(st.just(""), front), body)


def html() -> st.SearchStrategy[str]:
    tag = st.sampled_from(["h1", "h2", "h6", "p", "li", "td", "pre", "blockquote", "main", "article", "script",
                           "nav", "title", "div", "table", "b"])
    element = st.builds(lambda t, text, close: f"<{t}>{text}" + (f"</{t}>" if close else ""),
                        tag, hostile_text(3), st.booleans())
    return st.builds(lambda title, parts: f"<html><head><title>{title}</title></head><body>{''.join(parts)}",
                     hostile_text(3), st.lists(element, max_size=12))


def jsonl() -> st.SearchStrategy[str]:
    """Rows of one shape with hostile text (most load), or of any shape and value (most are refused)."""
    def rows(value):
        medquad = st.fixed_dictionaries({"question": value, "answer": value},
                                        optional={"qtype": value, "focus": value, "url": value})
        openfda = st.fixed_dictionaries({"drug": value, "section": value, "text": value})
        return medquad, openfda

    text_rows, any_rows = rows(hostile_text(3)), rows(json_values)
    lines = st.one_of(*(st.lists(row, min_size=1, max_size=6) for row in text_rows),
                      st.lists(st.one_of(*any_rows, json_values), max_size=6))
    return lines.map(lambda rows: "\n".join(map(json.dumps, rows)))


def openfda_json() -> st.SearchStrategy[str]:
    label = st.fixed_dictionaries({}, optional={
        "openfda": st.one_of(json_values, st.fixed_dictionaries({"generic_name": json_values})),
        "indications_and_usage": json_values, "warnings": st.lists(hostile_text(3), max_size=3),
        "boxed_warning": json_values})
    return st.one_of(label, st.fixed_dictionaries({"results": st.one_of(st.lists(label, max_size=3), json_values)}),
                     json_values).map(json.dumps)


STRUCTURED = {".md": markdown, ".markdown": markdown, ".html": html, ".htm": html, ".jsonl": jsonl,
              ".json": openfda_json}


def _xml_safe(text: str) -> str:
    """What python-docx accepts: XML 1.0 characters only (it refuses control characters and NUL itself)."""
    return "".join(c for c in text if c in "\t\n\r" or (unicodedata.category(c) != "Cc" and c not in "\ufffe\uffff"))


def make_docx(paragraphs: list[tuple[str, str]], title: str = "") -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.title = _xml_safe(title)[:255]
    for style, text in paragraphs:
        document.add_paragraph(_xml_safe(text), style=style)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_pdf(pages: list[str], title: str = "") -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(title.encode("latin-1", "replace").decode("latin-1"))
    pdf.set_font("Helvetica", size=10)
    for text in pages or [""]:
        pdf.add_page()
        # The core fonts know Latin-1 only; the parser, not fpdf, is under test.
        pdf.multi_cell(0, 5, text[:3000].encode("latin-1", "replace").decode("latin-1"))
    return bytes(pdf.output())


@cache
def valid_samples() -> dict[str, bytes]:
    """One well-formed file per binary format, for the cut and bit-flipped variants."""
    return {".docx": make_docx([("Heading 1", "Gout"), ("Normal", "Colchicine treats a flare.")], "Gout"),
            ".pdf": make_pdf(["Gout. Colchicine treats a flare.", "Second page."], "Gout")}


def damaged(sample: bytes) -> st.SearchStrategy[bytes]:
    """`sample` cut short, or with a few bytes overwritten."""
    cut = st.integers(0, len(sample)).map(lambda n: sample[:n])
    flips = st.lists(st.tuples(st.integers(0, len(sample) - 1), st.integers(0, 255)), min_size=1, max_size=8)

    def flip(changes):
        data = bytearray(sample)
        for at, value in changes:
            data[at] = value
        return bytes(data)

    return st.one_of(cut, flips.map(flip))


def zip_of(members: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    def pack(files: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        return buffer.getvalue()

    return members.map(pack)


def file_bytes(suffix: str) -> st.SearchStrategy[bytes]:
    """Bytes for a file named `*suffix`: hostile content in that format, damaged valid files, random bytes."""
    common = [st.just(b""), st.binary(max_size=4096)]
    if suffix in TEXT_SUFFIXES:
        return st.one_of(*common, encoded(hostile_text()), encoded(STRUCTURED.get(suffix, hostile_text)()),
                         st.builds(lambda a, junk, b: a + junk + b, encoded(hostile_text(3)), st.binary(max_size=64),
                                   encoded(hostile_text(3))))
    if suffix == ".pdf":
        return st.one_of(*common, damaged(valid_samples()[".pdf"]),
                         st.builds(make_pdf, st.lists(hostile_text(4), max_size=3), hostile_text(2)))
    if suffix == ".docx":
        style = st.sampled_from(["Normal", "Title", "Heading 1", "Heading 2", "Heading 9", "List Bullet", "Quote"])
        part_names = st.sampled_from(["[Content_Types].xml", "word/document.xml", "_rels/.rels", "docProps/core.xml",
                                      "word/_rels/document.xml.rels", "x"])
        return st.one_of(*common, damaged(valid_samples()[".docx"]),
                         st.builds(make_docx, st.lists(st.tuples(style, hostile_text(4)), max_size=6), hostile_text(2)),
                         zip_of(st.dictionaries(part_names, st.one_of(st.binary(max_size=256),
                                                                      encoded(hostile_text(3))), max_size=5)))
    raise ValueError(f"no strategy for {suffix!r}")


hostile_files = st.sampled_from(SUPPORTED_SUFFIXES).flatmap(lambda s: st.tuples(st.just(s), file_bytes(s)))


def check_loads_or_refuses(path: Path, tokenize=None) -> str:
    """The loaders' property: a Document whose text is text (and, given `tokenize`, that chunks), or a LoadError
    naming the file with a one-line reason; never another exception. Returns "loaded" or "refused"."""
    try:
        doc = load_document(path)
    except LoadError as exc:
        assert exc.path == str(path) and exc.reason, exc
        assert exc.reason.isprintable(), f"reason is not one printable line: {exc.reason!r}"
        return "refused"
    assert isinstance(doc.title, str) and doc.title and doc.sections
    shown = [doc.title]  # what terminals print: no control character but tab and newline (see clean_text)
    for section in doc.sections:
        assert isinstance(section.text, str) and section.text.strip()
        assert all(isinstance(heading, str) for heading in section.path)
        shown += [section.text, *section.path, section.title or ""]
    assert all(c in "\t\n" or unicodedata.category(c) != "Cc" for text in shown for c in text), shown
    if tokenize is not None:
        for chunk in chunk_document(doc, tokenize):
            assert isinstance(chunk.text, str) and chunk.text.strip()
    return "loaded"


# --- the chat -------------------------------------------------------------------------------------

def questions() -> st.SearchStrategy[str]:
    """What a user may type or paste into the question box (blank questions are not sent, so not drawn)."""
    part = st.one_of(st.sampled_from(FRAGMENTS), st.text(any_char, max_size=80), nested(), long_line())
    return st.lists(part, min_size=1, max_size=6).map("".join).filter(str.strip)


async def ask_in_chat(pilot, app, question: str, timeout: float = 120) -> None:
    """Paste `question` into a new chat, send it, and check the app answered it and kept running: the question is
    shown as it stood in the box, the answer is not an error, and the chat list (titled by the question) renders."""
    import time

    from textual import events

    from assistant.tui.widgets.exchange import Exchange

    await pilot.press("ctrl+n")  # each question titles a chat of its own, so the chat list shows them all
    box = app.chat.query_one("#question")
    box.value = ""
    box.post_message(events.Paste(question))  # as a terminal delivers it: the box takes the first line, cut to fit
    await pilot.pause()
    question = box.value
    if not question.strip():
        return  # a blank question is not sent
    await pilot.press("enter")
    deadline = time.monotonic() + timeout
    while not (app.chat.query(Exchange) and app.chat.query(Exchange).last().answer is not None
               and not app.chat.busy):
        assert app.return_code is None, f"the app stopped: {app._exception!r}"
        assert time.monotonic() < deadline, f"no answer after {timeout:.0f} s"
        await pilot.pause(0.02)
    exchange = app.chat.query(Exchange).last()
    assert not exchange.has_class("failed"), exchange.query_one(".badge").render()
    assert str(exchange.query_one(".question").render()) == f"You  {question.strip()}"
    await pilot.press("ctrl+l")
    await pilot.pause()
    await pilot.press("escape")
    await pilot.pause()
    assert app.return_code is None, f"the app stopped: {app._exception!r}"


async def fuzz_chat(app, pilot, config, on_crash=None, on_question=None) -> None:
    """Ask the running app Hypothesis-drawn questions under `config` (hypothesis.settings). Hypothesis runs in a
    thread, since each example must wait for the app, whose event loop (this one) drives the pilot. A failure is
    raised (Hypothesis shrinks it first), or given to `on_crash(question, exc)` and the run goes on."""
    import asyncio

    from hypothesis import given

    loop = asyncio.get_running_loop()
    # Hypothesis imports numpy when it builds a strategy: let the app's loader thread finish its own imports first
    # (two threads importing numpy at once see it half initialised, or wait on each other).
    await asyncio.to_thread(app.wait_for_agent, lambda status: None)
    strategy = questions()
    strategy.validate()

    @config
    @given(strategy)
    def ask_each(question):
        if on_question:
            on_question(question)
        try:
            asyncio.run_coroutine_threadsafe(ask_in_chat(pilot, app, question), loop).result()
        except Exception as exc:
            if on_crash is None:
                raise
            on_crash(question, exc)

    await asyncio.to_thread(ask_each)
