"""The clinical agent: route -> retrieve -> read the evidence -> generate -> check citations -> `Answer`.

Everything the CLI and the TUI show comes from the `Answer` built here (DESIGN.md's contract).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from assistant.abbreviations import NOT_TOPICS, expand
from assistant.backends import GenerationSettings
from assistant.evidence import (DRUG_CLASSES, STOP_WORDS, EvidenceReader, Quote, Unit, about, covers, class_words,
                                drugs_named, holds, last_sentence, names_topic, with_classes, without_stated_doses)
from assistant.grounding import GroundingChecker, split_sentences
from assistant.router import Router
from assistant.safety import (DISCLAIMER, check_question, emergency_notice, find_red_flags, looks_like_injection,
                              sanitize_passage)
from finetune.prompt import THINK_CLOSE, SourceText, build_prompt, close_reasoning, split_reasoning
from index.retrieve import RRF_K  # the routed and unfiltered rankings are fused as dense and BM25 are

# Best dense similarity (question vs passage) below which the sources are judged not to cover the
# question and the agent abstains. benchmarks/abstention_calibration.py on the starter notes: at 0.35
# all 30 off-topic questions abstain and 90% of 193 medical questions are answered.
MIN_RELEVANCE = 0.35
# A question holding a word no indexed chunk holds abstains below this best similarity, unless the passages
# quoted hold one of its rare known words (in at most RARE_SHARE of the chunks); tuned on the dev half of
# benchmarks/data/answer_questions.jsonl (see Agent._uncovered).
UNKNOWN_WORD_RELEVANCE = 0.6
RARE_SHARE = 0.02
# Units of the retrieved passages the model reads (see focused_sources).
FOCUS_UNITS = 8
# The model's best sentence may score this much below the best quote (the evidence reader's scores, ~0..2) and
# still lead the answer. Chosen on the dev half with the third tuned reader: 0.2 led 11 of 102 answers with a line
# that lacked the fact the quotes held, 0.1 six, 0.05 four, 0 two (and 46, 37, 29, 18 answers generated). The
# fourth (packaged) reader at 0.2 / 0.1 / 0.05 / 0: 17 / 15 / 12 / 8 of 73 / 67 / 59 / 40; a fifth at each, so
# 0.1 stays.
MODEL_MARGIN = 0.1
SPOKEN = 2  # chunks: an abbreviation the notes use this often is searched as written, not spelled out

CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


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
    generated: list[SentenceCheck] = field(default_factory=list)  # every sentence the model wrote, checked
    safety: dict = field(default_factory=dict)
    model: str = ""
    backend: str = ""
    timings: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class Agent:
    def __init__(self, kb, backend_factory: Callable[[], object] | None, k: int = 5,
                 settings: GenerationSettings | None = None, generate: bool = True):
        """`generate`: the model writes an answer after the evidence (always, when `use_rag` is off)."""
        self.kb = kb
        self.generate = generate
        self._backend_factory = backend_factory
        self._backend = None
        self.k = k
        self.settings = settings or GenerationSettings()
        self.router = Router(kb.embedder)
        self.checker = GroundingChecker(kb.embedder)
        self.reader = EvidenceReader(kb.embedder)

    @property
    def backend(self):
        if self._backend is None and self._backend_factory is not None:
            self._backend = self._backend_factory()
        return self._backend

    def ask(self, question: str, route: str | None = None, use_rag: bool = True, k: int | None = None,
            on_text: Callable[[str, str], None] | None = None, cancel: threading.Event | None = None,
            on_evidence: Callable[[Answer], None] | None = None) -> Answer:
        """Route, retrieve, read the evidence, generate and check.

        Evidence first: the quoted evidence answer is complete before the model starts, and is handed to
        `on_evidence` (the chat shows it, `ask` prints it) while the model writes. `on_text(phase, piece)`
        then receives the generated text as it streams, phase "reasoning" then "answer"; `cancel` ends
        generation early. The model's answer replaces the evidence only with the sentences that pass the
        citation check; when none pass, the evidence answer stands."""
        question = check_question(question)
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
            # "diltiazam" is diltiazem, and a dose the patient is on ("amlodipine 10 mg") is no dose asked
            asked = without_stated_doses(self._respelled(question))
            searched = expand(asked, self._spoken)  # "DCCV" finds "cardioversion"
            drugs = drugs_named(asked) - set(DRUG_CLASSES)  # as asked: "co-codamol" spelled out names two
            spelled = expand(asked, lambda short: short in NOT_TOPICS)  # the notes' own shorthand too: _retrieve
            if len(drugs) == 1:  # one drug is searched with its class (with_classes); two are searched together
                searched_as, spelled = with_classes(searched), with_classes(spelled)
            else:
                searched_as = searched
            passages, relevance = self._retrieve(searched_as, routed, k or self.k, drugs, spelled)
            timings["retrieve_s"] = time.perf_counter() - t
            answer.citations = [Citation(n, p.chunk.doc_id, p.chunk.title, p.chunk.source, p.chunk.section,
                                         p.chunk.page, p.chunk.text, round(p.score, 5),
                                         None if p.dense_score is None else round(p.dense_score, 4))
                                for n, p in enumerate(passages, start=1)]
            best = max((c.dense_score or 0.0 for c in answer.citations), default=0.0)  # as the question is written
            # The question's own words, an abbreviation spelled out replaced by its meaning: "LFTs" is in no note,
            # "liver function tests" is, so it is no word that no indexed chunk holds (see _uncovered).
            words = self._question_words(asked if searched == asked
                                         else expand(asked, self._spoken, keep_short=False))
            rare = self._rare(words if searched == asked else self._question_words(searched))
            t = time.perf_counter()
            scored = self._score_units(searched, answer.citations, rare) if relevance >= MIN_RELEVANCE else []
            quotes = self.reader.quotes(searched, scored, rare_words=rare)
            timings["evidence_s"] = time.perf_counter() - t
            # The note the answer leads with must be on the question's topic: "first-line treatment for a gout
            # flare?" led with the UTI note's first-line drugs, and a naproxen line that mentions gout came third.
            first = next((c.title for c in answer.citations if quotes and c.n == quotes[0].n), None)
            first_note_quotes = [f"{c.title} {c.section} {q.text}" for q in quotes for c in answer.citations
                                 if c.n == q.n and c.title == first]
            missing = self._uncovered(words, rare, first_note_quotes, best, drugs,
                                      topic_named=bool(first) and names_topic(first, asked))
            adults_only = bool(quotes) and _for_adults_only(question, first_note_quotes[0])
            if relevance < MIN_RELEVANCE or missing or adults_only:
                answer.abstained, answer.mode = True, "abstained"
                answer.abstain_reason = (f"the indexed sources do not cover this question (best relevance "
                                         f"{relevance:.2f} < {MIN_RELEVANCE})" if relevance < MIN_RELEVANCE else
                                         f"no passage quoted mentions {' or '.join(self._as_asked(missing, asked))}"
                                         if missing else "the passages found are about adults, and the question is "
                                                         "about a child")
                answer.answer = ("The indexed sources do not support an answer to this question. Add a relevant "
                                 "reference with `medassist ingest`, or ask with --no-rag for an unsourced answer.")
                answer.citations = []
                answer.timings = _rounded(timings, start)
                return answer
            answer.mode = "extractive"
            answer.answer, answer.sentences = quoted(quotes)
            answer.timings = _rounded(timings, start)
            if on_evidence:
                on_evidence(answer)

        backend = self.backend if self.generate or not use_rag else None
        sources = None
        if backend is not None:
            answer.model, answer.backend = backend.model_name, backend.name
            t = time.perf_counter()
            sources = (focused_sources([(c.n, c.title, c.section, c.text) for c in answer.citations], scored)
                       if use_rag else None)
            reasoning, text = self._generate(backend, question, sources, on_text, cancel)
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
        checked = self._check(text, answer.citations, sources or [])
        answer.generated = checked
        supported = [s for s in checked if s.supported]
        # Half or more of the model's sentences must pass, or its answer is not trusted at all; those that
        # pass lead the answer, and the rest are dropped (kept, checked, in `generated`). Passing is not
        # enough: a sentence copied from the wrong passage passes the check, so the answer must also read
        # as an answer to this question nearly as well as the best quote does (the evidence reader's own score).
        # The quotes the model did not restate stay under its answer: one sentence of it must not hide the
        # quote that held the fact (docs/benchmarks.md: 11 facts of 102 lost on the dev half when it did).
        if (supported and len(supported) * 2 >= len(checked)
                and self._against_quotes(searched, supported, answer.citations, quotes, rare) >= -MODEL_MARGIN):
            answer.mode = "generated"
            answer.answer, answer.sentences = led_by_the_model(
                supported, quotes, {c.n: about(c.title, c.section) for c in answer.citations})
        timings["check_s"] = time.perf_counter() - t
        answer.timings = _rounded(timings, start)
        return answer

    # --- steps ----------------------------------------------------------------------------------
    def _retrieve(self, question: str, route: str, k: int, drugs: set[str] = frozenset(),
                  spelled: str | None = None) -> tuple[list, float]:
        """The route's sources preferred, never required: the unfiltered and the routed rankings are fused by
        reciprocal rank, so a passage in both comes first and a misrouted question still finds its note. A question
        of several sentences is searched once more by its last one, the ask: "Needed two doses of adrenaline, now
        well. How long should we keep him in?" found only the dose table, the story's words outweighing the ask's.
        One that names two drugs or more (`drugs`, by name, not by class) is searched once more by their names: "pt
        on bisoprolol now in SVT - ok to give IV verapamil?" found the notes on each drug's doses and on SVT's rate
        control, not the beta-blocker note's line that IV verapamil must never be given to someone beta-blocked. A
        question naming one drug comes here with the drug's class after it (`with_classes`).
        `spelled`, the question with the shorthand the notes use spelled out as well, is searched too: BM25 matches
        the notes' "HFrEF" as written, but MiniLM knows few abbreviations. "Wells score 5 for PE - next step?" had a
        dense similarity of 0.35 as written (below the relevance floor) and 0.65 with "pulmonary embolism"; "Suspected
        TIA yesterday ... What should happen now?" found the aspirin 300 mg line only spelled out.
        Returns the passages and their relevance: the best dense similarity of any of them in any search, which the
        relevance floor reads. The unknown-word rule (_uncovered) reads the passages' own scores, from the first
        search that found each: spelled out, two near-topic questions with a word no note holds passed 0.6."""
        everywhere = self.kb.search(question, k=k)
        ask = last_sentence(question)
        # ... when the ask says something of its own: "What should he take?" alone finds any note's counselling.
        asks = [self.kb.search(ask, k=k)] if ask != question.strip() and len(_content_words(ask)) >= 2 else []
        if len(drugs) >= 2:  # ... and by the drugs it names, alone: "on bisoprolol, ok to give IV verapamil?"
            asks.append(self.kb.search(" ".join(sorted(drugs)), k=k))
        if spelled and spelled != question:
            asks.append(self.kb.search(spelled, k=k))
        if route == "general" and not asks:
            return everywhere, max((p.dense_score or 0.0 for p in everywhere), default=0.0)
        routed = self.kb.search(question, k=k, route=route) if route != "general" else []
        fused: dict[str, list] = {}
        for ranking in (everywhere, routed, *asks):
            for rank, passage in enumerate(ranking):
                entry = fused.setdefault(passage.chunk.chunk_id, [0.0, passage, 0.0])
                entry[0] += 1.0 / (RRF_K + rank)
                entry[2] = max(entry[2], passage.dense_score or 0.0)
        top = sorted(fused.values(), key=lambda e: (-e[0], -(e[1].dense_score or 0.0)))[:k]
        return [passage for _, passage, _ in top], max((dense for _, _, dense in top), default=0.0)

    def _spoken(self, abbreviation: str) -> bool:
        """Do the indexed notes use this abbreviation themselves (in at least SPOKEN chunks)? Every word of it:
        "co-amoxiclav" makes "co" common, and "co-codamol" is still in no note. A patient's phrase ("bladder
        infection") is always spelled out: its words are common in the notes, the phrase is not."""
        if " " in abbreviation:
            return False
        counts = self.kb.retriever.document_frequencies(abbreviation).values()
        return bool(counts) and all(count >= SPOKEN for count in counts)

    def _respelled(self, question: str) -> str:
        """The question with a misspelt drug name written as the drug: "diltiazam" -> "diltiazem". A word no
        indexed chunk holds is read as the indexed word one slip away (Retriever.near) when that word is a drug:
        misspelt, the drug was no subject, so nothing kept the reader from quoting lines about other drugs."""
        retriever = self.kb.retriever

        def respell(match: re.Match) -> str:
            word = match.group(0)
            stems = retriever.document_frequencies(word)
            if drugs_named(word) or list(stems.values()) != [0]:
                return word
            near = retriever.near(next(iter(stems)))
            # Index words are stems: "sertraline" is held as "sertralin".
            return next((form for form in (near[0], near[0] + "e") if drugs_named(form)), word) if near else word

        return re.sub(r"\b[A-Za-z]{5,}\b", respell, question)

    def _question_words(self, question: str) -> dict[str, int]:
        """The question's words as the index sees them (stemmed), each with how many chunks hold it; a typo
        counts as the word it misspells ("opiod" -> "opioid")."""
        retriever, words = self.kb.retriever, {}
        # A drug class the reader knows is no unknown topic, though no note spells it so: "my blood thinner". (A drug
        # no note names still is: the notes do not cover it.)
        known = set(retriever.document_frequencies(class_words(question)))
        for stem, count in retriever.document_frequencies(question).items():
            if stem.isalpha() and len(stem) >= 3 and stem not in STOP_WORDS and not (count == 0 and stem in known):
                stem, count = (retriever.near(stem) if count == 0 else None) or (stem, count)
                words[stem] = count
        return words

    def _as_asked(self, stems: list[str], question: str) -> list[str]:
        """Each stem as the question spelt it ("otiti" is "otitis"), for messages: the index sees stems."""
        spelt = re.findall(r"[\w-]+", question)
        return [next((w for w in spelt if stem in self.kb.retriever.document_frequencies(w)), stem) for stem in stems]

    def _rare(self, words: dict[str, int]) -> frozenset[str]:
        """Known words few chunks hold: what the question is about (its drug, test, score or condition)."""
        limit = max(3, RARE_SHARE * self.kb.retriever.chunk_count)
        return frozenset(w for w, count in words.items() if 0 < count <= limit)

    def _uncovered(self, words: dict[str, int], rare: frozenset[str], quoted: list[str],
                   best: float, drugs: set[str] = frozenset(), topic_named: bool = False) -> list[str]:
        """Words of the question that no indexed chunk holds ("impetigo", "flare"), when the passages found are
        only loosely related and those quoted hold none of the question's rare known words. Similarity alone would
        answer "Which antibiotic cream is used for impetigo?" from the notes on other antibiotics, and "first-line
        treatment for a gout flare?" with the UTI note's first-line drugs (a passage that mentions gout was
        retrieved, but it was not what the reader quoted); a clinical question phrased oddly ("I forgot my
        apixaban, it's lunchtime") still has its rare word (apixaban) in the passages that answer it, by name or
        by its class (the DOAC note's missed-dose lines). When the quoted passages name a drug the question names
        (`drugs`; a class does not count: "antibiotic cream for impetigo?"), an everyday word no note holds does not
        stop the answer: "Frail 45 kg woman on the ward - maximum paracetamol?" was refused for "ward". Nor does it
        when the question names the topic of the note the answer leads with (`topic_named`, see names_topic): "High-
        severity CAP: empirical antibiotics?" names community-acquired pneumonia, and was refused for "empirical".
        `quoted`: the quotes of the note the answer leads with, each after its note's title and section. The quote,
        not its whole passage: the passage on steroid sick days also held "watch" and "wait", and its sick-day
        line answered "3yo with acute otitis media - antibiotics or watchful waiting?"."""
        unknown = [w for w, count in words.items() if count == 0]
        if best >= UNKNOWN_WORD_RELEVANCE or not unknown:
            return []
        if topic_named:
            return []
        held = set().union(*(self.kb.retriever.document_frequencies(text) for text in quoted))
        if rare & held or any(covers(text, word) for text in quoted for word in rare):
            return []
        if any(covers(text, drug) for text in quoted for drug in drugs):
            # The quotes are about the drug asked about; a word no note holds still stops the answer when it may
            # name a topic of its own. The embedder's vocabulary tells: it keeps everyday words whole ("ward",
            # "chart") and cuts medical ones into pieces ("otitis" in "otitis media: amoxicillin for how many days?").
            unknown = [w for w in unknown if len(self.kb.embedder.tokenize(w)) > 1]
        return unknown

    def _generate(self, backend, question, sources, on_text, cancel) -> tuple[str, str]:
        prompt = build_prompt(question, sources)
        thinking, rest = self.settings.phases()
        reasoning = _stream(backend.generate(prompt, thinking, stop=[THINK_CLOSE], cancel=cancel), on_text, "reasoning")
        if cancel is not None and cancel.is_set():
            return split_reasoning(reasoning)[0], ""
        reasoning = split_reasoning(reasoning)[0]
        text = _stream(backend.generate(close_reasoning(prompt, reasoning), rest, cancel=cancel), on_text, "answer")
        return reasoning, text.strip()

    def _check(self, text: str, citations: list[Citation], shown: list[SourceText] = ()) -> list[SentenceCheck]:
        """Each generated sentence with its valid [n] markers, checked against what it cites. A sentence with no
        marker that copies a line of what the model was shown word for word is given that line's number and
        checked like the rest: the tuned reader copies a line that ends in ";" and stops before its marker (no
        training answer ends that way), and "16–20: moderate to severe;" is as sourced as any quote."""
        by_number = {c.n: c for c in citations}
        checks = []
        for sentence in split_sentences(text):
            cited = sorted({int(n) for group in CITATION.findall(sentence) for n in group.split(",")} & set(by_number))
            plain = CITATION.sub(lambda m: _keep_valid(m, by_number), sentence).strip()
            copied = None if cited else _copied_from(plain, shown)
            if copied in by_number:
                support = self.checker.check(plain, [by_number[copied].text])
                checks.append(SentenceCheck(f"{plain.rstrip(';,: ')} [{copied}]", [copied], support.supported,
                                            support.reason or f"copied word for word from [{copied}], which "
                                                              f"the model did not cite"))
            elif not cited:
                checks.append(SentenceCheck(plain, [], False, "no citation"))
            else:
                support = self.checker.check(CITATION.sub("", plain), [by_number[n].text for n in cited])
                checks.append(SentenceCheck(plain, cited, support.supported, support.reason))
        return checks

    def _against_quotes(self, question: str, generated: list[SentenceCheck], citations: list[Citation],
                        quotes: list[Quote], rare: frozenset[str]) -> float:
        """How the model's best sentence scores, by the evidence reader's measure, minus the best quote's score
        (0 when there are no quotes): the model's answer leads the quotes only when it is close to the best."""
        if not quotes:
            return 0.0
        by_number = {c.n: c for c in citations}
        units = [Unit(s.citations[0], CITATION.sub("", s.text).strip(),
                      about(by_number[s.citations[0]].title, by_number[s.citations[0]].section)) for s in generated]
        best = float(self.reader.scores(question, units, rank={}, rare_words=rare).max())
        return best - quotes[0].score

    def _score_units(self, question: str, citations: list[Citation],
                     rare_words: frozenset[str]) -> list[tuple[Unit, float]]:
        return self.reader.scored(question, [(c.n, c.title, c.section, c.text) for c in citations],
                                  skip=looks_like_injection, rare_words=rare_words)


# A question about a child: "4 month old with bronchiolitis", "croup in a 2 year old", "toddler". Not one about a
# mother that names her baby ("breastfeeding my 2 month old": she is the patient).
_CHILD = re.compile(r"\b(?:child(?:ren)?|toddler|infant|baby|babies|newborn|neonat\w*|paediatric|pediatric)\b|"
                    r"\b(?:[1-9]|1[01])[- ]?(?:years?|yrs?|y)[- ]?old\b|\b(?:[1-9]|1[01]) ?yo\b|"
                    r"\b\d{1,2}[- ]?(?:months?|weeks?|days?)[- ]?old\b", re.I)
_ADULT = re.compile(r"\badults?\b", re.I)


def _for_adults_only(question: str, lead: str) -> bool:
    """Whether a question about a child would be answered from a line for adults (the lead quote, after its note's
    title and section): "Dexamethasone dose for croup in a 2 year old?" was answered with "Common adult regimens:
    COPD exacerbation: 30 mg daily", and a 4-month-old's bronchiolitis with the adult pneumonia score. A line that
    names children too ("Adult, and child over 12: 500 micrograms") answers for both."""
    return (bool(_CHILD.search(question)) and not re.search(r"\bbreast-?fe\w*|\bpregnan\w*", question, re.I)
            and bool(_ADULT.search(lead)) and not _CHILD.search(lead))


def quoted(quotes: list[Quote], heading: str = "From the sources:") -> tuple[str, list[SentenceCheck]]:
    """The evidence answer: each quote under what it is about, with its number; supported by construction."""
    if not quotes:
        return "The retrieved sources contain no sentence that answers this.", []
    checks = [SentenceCheck(f"{q.about}: {q.text} [{q.n}]", [q.n], True, "quoted from the source") for q in quotes]
    return f"{heading}\n\n" + "\n".join(f"- **{q.about}:** {q.text} [{q.n}]" for q in quotes), checks


def led_by_the_model(supported: list[SentenceCheck], quotes: list[Quote],
                     about_source: dict[int, str] | None = None) -> tuple[str, list[SentenceCheck]]:
    """The model's checked sentences, then the quotes none of them restates in full (a quote the model cut short
    stays: "diltiazem or verapamil" without the quote's "Avoid these when LVEF is reduced"). A sentence that names
    no word of what its source is about (`about_source`: number -> "Title › Section") is shown under it, as every
    quote is: the tuned reader copies bare lines ("16–20: moderate to severe [2]", a band of the NIHSS)."""
    said = [CITATION.sub("", s.text) for s in supported]
    rest = [q for q in quotes if not any(holds(text, q.text) for text in said)]
    text = " ".join(_with_subject(s, about_source or {}) for s in supported)
    if not rest:
        return text, supported
    more, checks = quoted(rest, "Also in the sources:")
    return f"{text}\n\n{more}", supported + checks


def _with_subject(sentence: SentenceCheck, about_source: dict[int, str]) -> str:
    heading = about_source.get(sentence.citations[0]) if sentence.citations else None
    if not heading or _content_words(heading) & _content_words(sentence.text):
        return sentence.text
    return f"**{heading}:** {sentence.text}"


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2 and w not in STOP_WORDS}


def focused_sources(passages: list[tuple[int, str, str, str]], scored: list[tuple[Unit, float]],
                    keep: int = FOCUS_UNITS, always: frozenset[int] = frozenset()) -> list[SourceText]:
    """What the model reads: each passage (n, title, section, text) cut down to its units among the `keep` the
    evidence reader scored best (those at the indices `always` of `scored` among them), one per line, the best first
    (list items with their lead-in, table rows with their headers), the passage holding the best line first; a
    passage with none of them is left out. Each keeps its number. A 270M reader handed five whole passages copies the
    wrong line or the wrong passage, most often the first line of one (docs/benchmarks.md); handed the few lines that
    can answer, the likeliest first, it has only to choose and cite. `keep` 0: the whole passages."""
    if not keep or not scored:
        return [source_text(*p) for p in passages]
    best = [i for i in sorted(range(len(scored)), key=lambda i: -scored[i][1]) if scored[i][1] != float("-inf")]
    chosen = set(always) & set(best)
    chosen |= set([i for i in best if i not in chosen][:max(0, keep - len(chosen))])
    kept = [scored[i][0] for i in best if i in chosen]
    by_number = {p[0]: p for p in passages}
    sources = []
    for n in dict.fromkeys(unit.n for unit in kept):  # passages in the order of their best line
        _, title, section, _ = by_number[n]
        lines = [f"- {unit.text}" for unit in kept if unit.n == n]
        sources.append(source_text(n, title, section, "\n".join(lines)))
    return sources or [source_text(*p) for p in passages]  # every unit about another drug: let the check judge


def _copied_from(sentence: str, shown: list[SourceText]) -> int | None:
    """The number of the first source shown to the model with a line that holds `sentence` word for word."""
    words = " ".join(sentence.rstrip(";,:. ").split()).lower()
    return next((source.number for source in shown for line in source.text.splitlines()
                 if words and words in " ".join(line.split()).lower()), None)


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
