"""The clinical agent: route -> retrieve -> generate -> check citations -> `Answer`.

Everything the CLI and the TUI show comes from the `Answer` built here (DESIGN.md's contract).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from assistant.backends import GenerationSettings
from assistant.grounding import GroundingChecker, quotable_sentences, split_sentences
from assistant.router import Router
from assistant.safety import DISCLAIMER, emergency_notice, find_red_flags, looks_like_injection, sanitize_passage
from finetune.prompt import THINK_CLOSE, SourceText, build_prompt, close_reasoning, split_reasoning

# Best dense similarity (question vs passage) below which the sources are judged not to cover the
# question and the agent abstains. benchmarks/abstention_calibration.py on the starter notes: at 0.35
# all 30 off-topic questions abstain and 90% of 193 medical questions are answered.
MIN_RELEVANCE = 0.35
EXTRACTIVE_SENTENCES = 3
_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


@dataclass
class Citation:
    n: int
    doc_id: str
    title: str
    source: str
    section: str
    page: int | None
    text: str
    score: float
    dense_score: float | None


@dataclass
class SentenceCheck:
    text: str
    citations: list[int]
    supported: bool
    reason: str = ""


@dataclass
class Answer:
    question: str
    route: str
    route_confidence: float
    answer: str
    reasoning: str = ""
    citations: list[Citation] = field(default_factory=list)
    sentences: list[SentenceCheck] = field(default_factory=list)
    abstained: bool = False
    abstain_reason: str = ""
    mode: str = "generated"  # generated | extractive | unsourced | abstained
    safety: dict = field(default_factory=dict)
    model: str = ""
    backend: str = ""
    timings: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class Agent:
    def __init__(self, kb, backend_factory: Callable[[], object] | None, k: int = 5,
                 settings: GenerationSettings | None = None):
        self.kb = kb
        self._backend_factory = backend_factory
        self._backend = None
        self.k = k
        self.settings = settings or GenerationSettings()
        self.router = Router(kb.embedder)
        self.checker = GroundingChecker(kb.embedder)

    @property
    def backend(self):
        if self._backend is None and self._backend_factory is not None:
            self._backend = self._backend_factory()
        return self._backend

    def ask(self, question: str, route: str | None = None, use_rag: bool = True, k: int | None = None,
            on_text: Callable[[str, str], None] | None = None, cancel: threading.Event | None = None) -> Answer:
        """Route, retrieve, generate and check. `on_text(phase, piece)` receives the generated text as it
        streams, phase "reasoning" then "answer"; `cancel` ends generation early (the answer is then checked
        as far as it got)."""
        timings: dict[str, float] = {}
        start = time.perf_counter()
        flags = find_red_flags(question)
        safety = {"red_flags": flags, "emergency_notice": emergency_notice(flags), "disclaimer": DISCLAIMER}
        if route:
            routed, confidence = route, 1.0
        else:
            routed, confidence = self.router.route(question)
        timings["route_s"] = time.perf_counter() - start
        answer = Answer(question, routed, round(confidence, 3), "", safety=safety)

        if use_rag:
            t = time.perf_counter()
            passages = self._retrieve(question, routed, k or self.k)
            timings["retrieve_s"] = time.perf_counter() - t
            answer.citations = [Citation(n, p.chunk.doc_id, p.chunk.title, p.chunk.source, p.chunk.section,
                                         p.chunk.page, p.chunk.text, round(p.score, 5),
                                         None if p.dense_score is None else round(p.dense_score, 4))
                                for n, p in enumerate(passages, start=1)]
            best = max((c.dense_score or 0.0 for c in answer.citations), default=0.0)
            if best < MIN_RELEVANCE:
                answer.abstained, answer.mode = True, "abstained"
                answer.abstain_reason = (f"the indexed sources do not cover this question (best relevance "
                                         f"{best:.2f} < {MIN_RELEVANCE})")
                answer.answer = ("The indexed sources do not support an answer to this question. Add a relevant "
                                 "reference with `medassist ingest`, or ask with --no-rag for an unsourced answer.")
                answer.citations = []
                answer.timings = _rounded(timings, start)
                return answer

        backend = self.backend
        if backend is not None:
            answer.model, answer.backend = backend.model_name, backend.name
            t = time.perf_counter()
            reasoning, text = self._generate(backend, question, answer.citations if use_rag else None, on_text, cancel)
            timings["generate_s"] = time.perf_counter() - t
            answer.reasoning = reasoning
        else:
            text = ""

        if not use_rag:
            answer.mode = "unsourced"
            answer.answer = f"**Unsourced answer (model only, no references checked).**\n\n{text}".strip()
            answer.timings = _rounded(timings, start)
            return answer

        t = time.perf_counter()
        answer.answer, answer.sentences = self._check(text, answer.citations)
        if not any(s.supported for s in answer.sentences):
            answer.mode = "extractive"
            answer.answer, answer.sentences = self._extractive(question, answer.citations)
        timings["check_s"] = time.perf_counter() - t
        answer.timings = _rounded(timings, start)
        return answer

    # --- steps ----------------------------------------------------------------------------------
    def _retrieve(self, question: str, route: str, k: int):
        """The route's own sources first; widened to all sources when they are thin."""
        passages = self.kb.search(question, k=k, route=route if route != "general" else None)
        thin = len(passages) < k or max((p.dense_score or 0.0 for p in passages), default=0.0) < MIN_RELEVANCE
        if thin and route != "general":
            seen = {p.chunk.chunk_id for p in passages}
            passages += [p for p in self.kb.search(question, k=k) if p.chunk.chunk_id not in seen]
            passages = sorted(passages, key=lambda p: p.dense_score or 0.0, reverse=True)[:k]
        return passages

    def _generate(self, backend, question, citations, on_text, cancel) -> tuple[str, str]:
        sources = [source_text(c.n, c.title, c.section, c.text) for c in citations] if citations else None
        prompt = build_prompt(question, sources)
        thinking, rest = self.settings.phases()
        reasoning = _stream(backend.generate(prompt, thinking, stop=[THINK_CLOSE], cancel=cancel), on_text, "reasoning")
        if cancel is not None and cancel.is_set():
            return split_reasoning(reasoning)[0], ""
        reasoning = split_reasoning(reasoning)[0]
        text = _stream(backend.generate(close_reasoning(prompt, reasoning), rest, cancel=cancel), on_text, "answer")
        return reasoning, text.strip()

    def _check(self, text: str, citations: list[Citation]) -> tuple[str, list[SentenceCheck]]:
        """Keep valid [n] markers, check each sentence against what it cites, mark the unsupported."""
        by_number = {c.n: c for c in citations}
        checks, lines = [], []
        for sentence in split_sentences(text):
            cited = sorted({int(n) for group in _CITATION.findall(sentence) for n in group.split(",")} & set(by_number))
            plain = _CITATION.sub(lambda m: _keep_valid(m, by_number), sentence).strip()
            if not cited:
                checks.append(SentenceCheck(plain, [], False, "no citation"))
            else:
                support = self.checker.check(_CITATION.sub("", plain), [by_number[n].text for n in cited])
                checks.append(SentenceCheck(plain, cited, support.supported, support.reason))
            lines.append(plain if checks[-1].supported else f"{plain} *[unsupported: {checks[-1].reason}]*")
        return " ".join(lines), checks

    def _extractive(self, question: str, citations: list[Citation]) -> tuple[str, list[SentenceCheck]]:
        """The most relevant source sentences, quoted with their numbers: always supported by construction."""
        import numpy as np

        candidates = [(c.n, s) for c in citations for s in quotable_sentences(c.text)
                      if len(s.split()) >= 5 and not looks_like_injection(s)]
        if not candidates:
            return "The retrieved sources contain no sentence that answers this.", []
        # A sentence is scored with its section heading in front: "an ACE inhibitor or an ARB" only
        # answers "first-line treatment?" because it sits under "Choosing the first drug".
        headings = {c.n: f"{c.title} > {c.section}: " if c.section else f"{c.title}: " for c in citations}
        texts = [headings[n] + s for n, s in candidates]
        vectors = np.asarray(self.kb.embedder.embed([question, *texts]), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        order = np.argsort(-(vectors[1:] @ vectors[0]))[:EXTRACTIVE_SENTENCES]
        chosen = [candidates[i] for i in sorted(order)]
        checks = [SentenceCheck(f"{s} [{n}]", [n], True, "quoted from the source") for n, s in chosen]
        return "From the sources:\n\n" + "\n".join(f"- {c.text}" for c in checks), checks


def source_text(n: int, title: str, section: str, text: str) -> SourceText:
    """A retrieved passage as the model sees it; sanitised, because retrieved text is data, never instructions."""
    return SourceText(n, f"{title} > {section}" if section else title, sanitize_passage(text))


def _keep_valid(match: re.Match, by_number: dict) -> str:
    valid = [n.strip() for n in match.group(1).split(",") if int(n) in by_number]
    return f"[{', '.join(valid)}]" if valid else ""  # a number that names no passage is removed


def _stream(pieces, on_text, phase: str) -> str:
    text = ""
    for piece in pieces:
        text += piece
        if on_text:
            on_text(phase, piece)
    return text


def _rounded(timings: dict, start: float) -> dict:
    return {**{k: round(v, 3) for k, v in timings.items()}, "total_s": round(time.perf_counter() - start, 3)}
