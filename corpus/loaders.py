"""Read one file into a `Document`, or raise `LoadError` saying which file and why.

Every expected failure (unreadable, empty, binary, encrypted, malformed, too large, unknown type)
becomes a `LoadError` with a one-line reason, so the CLI can report it and go on with the batch.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Callable

import yaml

from corpus.models import ROUTES, Document, Section

DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # the whole MedQuAD corpus (27 MB) fits; a stray disk image does not

# MedQuAD question types -> our routes; the rest (information, outlook, genetics...) are "general".
MEDQUAD_QTYPE_ROUTES = {
    "symptoms": "diagnosis",
    "exams and tests": "diagnosis",
    "stages": "diagnosis",
    "causes": "diagnosis",
    "complications": "diagnosis",
    "treatment": "treatment",
    "prevention": "treatment",
    "considerations": "treatment",
}
# openFDA drug-label fields worth indexing, with the heading a reader expects.
OPENFDA_SECTIONS = {
    "boxed_warning": "Boxed Warning",
    "indications_and_usage": "Indications and Usage",
    "dosage_and_administration": "Dosage and Administration",
    "contraindications": "Contraindications",
    "warnings_and_cautions": "Warnings and Precautions",
    "warnings": "Warnings",
    "precautions": "Precautions",
    "drug_interactions": "Drug Interactions",
    "adverse_reactions": "Adverse Reactions",
    "use_in_specific_populations": "Use in Specific Populations",
    "pregnancy": "Pregnancy",
    "overdosage": "Overdosage",
}
# A DOCX is a zip, and python-docx holds every part unpacked in memory: a zip bomb (a few KB unpacking to
# gigabytes) is refused from its declared sizes before parsing. Those can be trusted: zipfile never unpacks more
# than a member declares (it cuts there and the CRC check fails).
ZIP_MAX_UNPACKED = 512 * 2**20  # far above a real DOCX, pictures included
ZIP_MAX_RATIO = 100  # Word's XML packs about 10:1, pictures 1:1; zeros pack 1000:1
ZIP_RATIO_FLOOR = 16 * 2**20  # under this much unpacked, a high ratio is harmless (a near-empty template)
_SEP = "\x1f"  # heading-path separator that cannot occur in a heading ("Asthma/COPD" must stay whole)


class LoadError(Exception):
    """An expected failure to read a file; `str()` is the one-line reason shown to the user."""

    def __init__(self, path: Path | str, reason: str):
        # One printable line, as the CLI reports one line per file: parser messages can span lines (PyYAML's do)
        # and quote the file's own control characters.
        reason = "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(reason.split()))
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


# Part of each document's id (the hash of its bytes): when the way files are read or cut into chunks changes,
# ingesting a file again reads it anew instead of keeping the chunks of the old reading as "unchanged".
# 2: bold initials (_BOLD_INITIAL). 3: a chunk carries the list lead-in or table header it starts under (chunking).
READER_VERSION = 3


def load_document(path: Path | str, route: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Document:
    """Read `path` into a Document. `route` overrides the routes the file declares or implies."""
    path = Path(path)
    if route is not None and route not in ROUTES:
        raise LoadError(path, f"unknown route {route!r} (expected one of {', '.join(ROUTES)})")
    data = _read_bytes(path, max_bytes)
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoadError(path, f"unsupported file type {path.suffix or '(no extension)'!r}; "
                              f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    doc_id = hashlib.sha256(data + f"\0route={route}\0reader={READER_VERSION}".encode()).hexdigest()
    try:
        doc = loader(path, data, doc_id)
    except LoadError:
        raise
    except Exception as exc:  # a parser library choking on a corrupt file is an expected failure
        raise LoadError(path, f"could not parse {path.suffix} file ({type(exc).__name__}: {exc})") from exc
    # An explicit --route wins over per-item routes too.
    sections = [Section(tuple(map(clean_text, s.path)), clean_text(s.text), s.page, s.title and clean_text(s.title),
                        s.source, None if route else s.routes) for s in doc.sections]
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise LoadError(path, "no text found in the file")
    routes = (route,) if route else doc.routes
    return Document(doc.doc_id, doc.source, clean_text(doc.title) or path.stem, doc.kind, routes, sections,
                    doc.updated, doc.reference)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1


def clean_text(text: str) -> str:
    """Text as a terminal may show it: line ends made "\\n", other control characters taken out. Titles and
    passages are printed (sources, search, the chat), and a terminal obeys an escape sequence ("\\x1b]0;...")."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    try:
        resolved = path.resolve(strict=True)
    except RuntimeError:  # Python raises this for symlink loops
        raise LoadError(path, "symlink loop") from None
    except FileNotFoundError:
        raise LoadError(path, "no such file (or a broken symlink)") from None
    except OSError as exc:
        raise LoadError(path, exc.strerror or str(exc)) from None
    if not resolved.is_file():
        raise LoadError(path, "not a regular file")
    size = resolved.stat().st_size
    if size == 0:
        raise LoadError(path, "file is empty")
    if size > max_bytes:
        raise LoadError(path, f"file is {_size(size)}, over the {_size(max_bytes)} limit "
                              "(raise max_file_mb in config.toml)")
    try:
        return resolved.read_bytes()
    except OSError as exc:
        raise LoadError(path, f"cannot read: {exc.strerror or exc}") from None


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def decode_text(path: Path, data: bytes) -> str:
    """Bytes -> str in whatever encoding the file uses; binary junk is refused, not guessed at."""
    if data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
        return data.decode(encoding)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if b"\x00" in data[:8192]:
        raise LoadError(path, "binary data, not text")
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None or best.chaos > 0.2:
        raise LoadError(path, "cannot determine the text encoding (binary or mixed encodings?)")
    # On a tie charset_normalizer picks the first code page alphabetically, cp1250 over cp1252, which
    # turns Latin-1 "Ménière" into "Méničre"; prefer Western cp1252 when it is as plausible.
    western = next((m for m in matches if m.encoding == "cp1252"
                    and m.chaos <= best.chaos and m.coherence >= best.coherence), None)
    return str(western or best)


def _front_matter(path: Path, text: str) -> tuple[dict, str]:
    """Split YAML front matter (title, route, source, updated) from a Markdown body and validate it."""
    if not text.startswith("---"):
        return {}, text
    match = re.match(r"---[ \t]*\r?\n(.*?)^---[ \t]*(?:\r?\n|\Z)", text, re.S | re.M)
    if not match:
        raise LoadError(path, "front matter starts with '---' but has no closing '---' line")
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark else ""
        raise LoadError(path, f"front matter is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(meta, dict):
        raise LoadError(path, "front matter must be a mapping of fields (title:, route:, ...)")
    for key in ("title", "source"):
        if key in meta and not isinstance(meta[key], str):
            raise LoadError(path, f"front matter field {key!r} must be text")
    if "route" in meta:
        meta["route"] = _check_routes(path, meta["route"])
    return meta, text[match.end():]


def _check_routes(path: Path, value) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise LoadError(path, "front matter field 'route' must be a route name or a list of them")
    for v in values:
        if v not in ROUTES:
            raise LoadError(path, f"front matter field 'route': unknown route {v!r} (expected one of {', '.join(ROUTES)})")
    return tuple(values)


# An acronym's letters set in bold inside their words ("**C**onfusion", "**A**ge 75 or over"): the word is what
# is searched and read, and split at the marker it was "C" and "onfusion", so "age" matched no line of the
# CHA2DS2-VASc list. The bold goes; the word stays whole.
_BOLD_INITIAL = re.compile(r"\*\*([A-Za-z]{1,3})\*\*(?=[a-z])")


def _load_markdown(path: Path, data: bytes, doc_id: str) -> Document:
    from llama_index.core import Document as LIDocument
    from llama_index.core.node_parser import MarkdownNodeParser

    meta, body = _front_matter(path, decode_text(path, data))
    body = _BOLD_INITIAL.sub(r"\1", body)
    parser = MarkdownNodeParser(header_path_separator=_SEP)
    sections = []
    for node in parser.get_nodes_from_documents([LIDocument(text=body)]):
        parents = [p for p in node.metadata.get("header_path", "").split(_SEP) if p]
        text = node.text
        heading = re.match(r"#{1,6}\s+(.+)", text)
        if heading:  # the parser leaves the section's own heading as its first line
            parents.append(heading.group(1).strip())
            text = text[heading.end():]
        if not parents and all(line.startswith(">") for line in text.strip().splitlines()):
            continue  # a quoted notice before the first heading (as in the starter notes) is not reference content
        sections.append(Section(tuple(parents), text.strip()))
    first_heading = next((s.path[0] for s in sections if s.path), None)
    title = meta.get("title") or first_heading or path.stem.replace("-", " ").replace("_", " ")
    # The document title is usually the top heading too: drop it from section paths to avoid "X > X > Y",
    # but only when it heads every section, not when it is merely the first of several sibling headings.
    top = first_heading if all(s.path[:1] == (first_heading,) for s in sections if s.path) else None
    sections = [Section(s.path[1:] if s.path[:1] == (title,) or (top and s.path[:1] == (top,)) else s.path, s.text)
                for s in sections]
    return Document(doc_id, str(path.resolve()), title, "markdown", meta.get("route") or ("general",), sections,
                    _str_or_none(meta.get("updated")), meta.get("source"))


def _str_or_none(value) -> str | None:
    return None if value is None else str(value)


def _load_text(path: Path, data: bytes, doc_id: str) -> Document:
    text = decode_text(path, data)
    title = path.stem.replace("-", " ").replace("_", " ")
    return Document(doc_id, str(path.resolve()), title, "text", ("general",), [Section((), text.strip())])


def _load_pdf(path: Path, data: bytes, doc_id: str) -> Document:
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    # What pypdf works around it logs, some of it at ERROR level (a damaged font encoding); it would interleave with
    # our report, which says when a file cannot be read.
    logging.getLogger("pypdf").setLevel(logging.CRITICAL)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):  # an empty user password still opens some
            raise LoadError(path, "PDF is encrypted (password protected); decrypt it first")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or path.stem
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError) as exc:
        raise LoadError(path, f"not a readable PDF ({exc})") from None
    sections = [Section((f"Page {n}",), text.strip(), page=n) for n, text in enumerate(pages, start=1)]
    return Document(doc_id, str(path.resolve()), str(title), "pdf", ("general",), sections)


def _load_html(path: Path, data: bytes, doc_id: str) -> Document:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(path, data), "html.parser")
    for tag in soup(["script", "style", "nav", "header", "footer", "aside", "noscript", "form"]):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    title = (soup.title.string.strip() if soup.title and soup.title.string else None)
    headings: list[str] = []
    sections: list[Section] = []
    buffer: list[str] = []

    def flush() -> None:
        if buffer:
            sections.append(Section(tuple(headings), "\n".join(buffer)))
            buffer.clear()

    for el in root.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "td", "pre", "blockquote"]):
        if el.find_parent(["p", "li", "td", "pre", "blockquote"]):
            continue  # text is taken once, from the outermost block
        text = " ".join(el.get_text(" ").split())
        if not text:
            continue
        if el.name[0] == "h":
            flush()
            level = int(el.name[1])
            del headings[level - 1:]
            headings.extend([""] * (level - 1 - len(headings)))
            headings.append(text)
        else:
            buffer.append(text)
    flush()
    title = title or next((s.path[0] for s in sections if s.path and s.path[0]), path.stem)
    sections = [Section(tuple(h for h in s.path if h and h != title), s.text) for s in sections]
    return Document(doc_id, str(path.resolve()), title, "html", ("general",), sections)


def _load_docx(path: Path, data: bytes, doc_id: str) -> Document:
    import docx

    try:
        _check_zip_sizes(path, data)
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise LoadError(path, f"not a valid DOCX file ({exc})") from None
    title = document.core_properties.title or path.stem
    headings: list[str] = []
    sections: list[Section] = []
    buffer: list[str] = []
    for para in document.paragraphs:
        style = para.style.name if para.style is not None else ""
        text = para.text.strip()
        if not text:
            continue
        level = re.match(r"Heading (\d)", style)
        if level or style == "Title":
            if buffer:
                sections.append(Section(tuple(headings), "\n".join(buffer)))
                buffer = []
            depth = int(level.group(1)) if level else 1
            headings = headings[: depth - 1] + [text]
        else:
            buffer.append(text)
    if buffer:
        sections.append(Section(tuple(headings), "\n".join(buffer)))
    sections = [Section(tuple(h for h in s.path if h != title), s.text) for s in sections]
    return Document(doc_id, str(path.resolve()), title, "docx", ("general",), sections)


def _check_zip_sizes(path: Path, data: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        unpacked = sum(member.file_size for member in archive.infolist())
    if unpacked > ZIP_MAX_UNPACKED:
        raise LoadError(path, f"refused as a possible zip bomb: unpacks to {_size(unpacked)}, "
                              f"over the {_size(ZIP_MAX_UNPACKED)} limit")
    if unpacked > max(ZIP_RATIO_FLOOR, ZIP_MAX_RATIO * len(data)):
        raise LoadError(path, f"refused as a possible zip bomb: {_size(len(data))} unpacks to {_size(unpacked)} "
                              f"(over {ZIP_MAX_RATIO} times its size)")


def _json_lines(path: Path, data: bytes) -> list[dict]:
    rows = []
    for number, line in enumerate(decode_text(path, data).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoadError(path, f"line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise LoadError(path, f"line {number}: expected a JSON object")
        rows.append(row)
    return rows


def _load_jsonl(path: Path, data: bytes, doc_id: str) -> Document:
    """Question/answer JSONL in the MedQuAD shape, or openFDA label sections (drug, section, text)."""
    rows = _json_lines(path, data)
    if not rows:
        raise LoadError(path, "no JSON lines found")
    if {"question", "answer"} <= rows[0].keys():
        return _medquad(path, rows, doc_id)
    if {"drug", "section", "text"} <= rows[0].keys():
        sections = [Section((_field(path, n, r, "section"),), _field(path, n, r, "text"),
                            title=_field(path, n, r, "drug").title())
                    for n, r in enumerate(rows, start=1)]
        return Document(doc_id, str(path.resolve()), path.stem, "openfda", ("medication",), sections)
    raise LoadError(path, "unrecognised JSONL shape: expected question/answer (MedQuAD) "
                          "or drug/section/text (openFDA label sections) fields")


def _field(path: Path, line: int, row: dict, key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise LoadError(path, f"line {line}: field {key!r} is missing or not text")
    return value


def _medquad(path: Path, rows: list[dict], doc_id: str) -> Document:
    sections = []
    for n, row in enumerate(rows, start=1):
        question, answer = _field(path, n, row, "question"), _field(path, n, row, "answer")
        focus = row.get("focus") if isinstance(row.get("focus"), str) else None
        route = MEDQUAD_QTYPE_ROUTES.get(str(row.get("qtype", "")).lower(), "general")
        sections.append(Section((question.strip(),), answer, title=focus or question.strip(),
                                source=row.get("url") or None, routes=(route,)))
    return Document(doc_id, str(path.resolve()), path.stem, "medquad", ("general",), sections)


def _load_openfda_json(path: Path, data: bytes, doc_id: str) -> Document:
    """An openFDA drug-label API response ({"results": [label, ...]}) or one label object."""
    try:
        payload = json.loads(decode_text(path, data))
    except json.JSONDecodeError as exc:
        raise LoadError(path, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    labels = payload.get("results", [payload]) if isinstance(payload, dict) else None
    if not isinstance(labels, list) or not all(isinstance(label, dict) for label in labels):
        raise LoadError(path, "expected an openFDA drug-label object or a {'results': [...]} response")
    sections = []
    for label in labels:
        openfda = label.get("openfda") or {}
        names = openfda.get("generic_name") or openfda.get("brand_name") or ["unnamed drug"]
        drug = str(names[0]).title()
        for key, heading in OPENFDA_SECTIONS.items():
            for text in label.get(key) or []:
                sections.append(Section((heading,), str(text), title=drug))
    if not sections:
        raise LoadError(path, "no openFDA label sections found (e.g. indications_and_usage, warnings)")
    title = sections[0].title if len(labels) == 1 else path.stem
    return Document(doc_id, str(path.resolve()), title, "openfda", ("medication",), sections)


_LOADERS: dict[str, Callable[[Path, bytes, str], Document]] = {
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".txt": _load_text,
    ".text": _load_text,
    ".pdf": _load_pdf,
    ".html": _load_html,
    ".htm": _load_html,
    ".docx": _load_docx,
    ".jsonl": _load_jsonl,
    ".json": _load_openfda_json,
}
SUPPORTED_SUFFIXES = tuple(_LOADERS)
