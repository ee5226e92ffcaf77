"""Grounded-answer (RAFT-style) training rows for the reader model.

The reader is the model the assistant asks to answer from retrieved passages. Each row here is a
question with 4-5 numbered passages in the assistant's `### Sources:` format (finetune/prompt.py):
either one oracle passage that answers it among distractors, and a short answer that cites the
oracle's number, or (about a fifth of the rows) only distractors, and the fixed answer
`NOT_IN_SOURCES`, which the assistant can detect. Distractors come from a BM25 index over all the
passages, so they look like what retrieval really returns: on topic, but not the answer.

    MedQuAD     question -> its own answer is the oracle; target: its first content sentence(s) [n]
    PubMedQA    question -> its abstract is the oracle; target: Yes./No./Maybe. + the conclusion [n]
    openFDA     templated question about a drug label section -> that section; target: its first sentence(s) [n]
    medical-o1  vignette questions, unanswerable: only distractors
    MedQuAD     some questions unanswerable too: their oracle (and its document) removed

Three variants bring the rows closer to what the assistant reads (the starter notes: terse sections of
list items and table rows under "Title > Section") and asks (shorthand and vignettes):

    note style  a share of rows show every passage as a note: "Focus > Symptoms" (MedQuAD) or
                "Drug > Contraindications" (openFDA) over one line per sentence, most as "- " items;
                a MedQuAD oracle then sits among up to two *sibling sections* of the same note (its
                treatment when symptoms are asked), so the section, not the subject, must decide
    keyword     shorthand questions about one line of a note that is not its first ("Quarry lung
                treatment: corticosteroids, oxygen?"), made of two of that line's rarest words; the
                target is that line, copied word for word
    vignette    some answerable MedQuAD questions are asked as a case ("A 54-year-old woman with X: what
                are the treatments?"), so that a case is no sign that the sources cannot answer (every
                medical-o1 vignette is unanswerable)

Every answer copies its sentences from the oracle word for word (PubMedQA's yes/no aside): a copied
sentence is one the assistant's citation check passes.

DATA RULE: PubMedQA rows whose `official_split` is "test" are MIRAGE's PubMedQA* evaluation
questions. They are never used, not even as distractors: only rows with official_split ==
"train_dev" are read, any other row is skipped and counted (skipped "pubmedqa_not_train_dev").
MIRAGE and MedQA files are never opened: the builder reads exactly the files named in INPUTS.

Every step is seeded: the same inputs and seed give byte-identical files.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from finetune.config import FinetuneError
from finetune.data import jsonl_objects
from finetune.prompt import SourceText, build_prompt

NOT_IN_SOURCES = "The sources do not say."  # the fixed start of every unanswerable answer: the assistant detects it
INPUTS = {"medquad": "medquad_qa_corpus.jsonl", "pubmedqa": "pubmedqa_pqal.jsonl",
          "openfda": "openfda_drug_label_sections_sample.jsonl", "medical_o1": "medical_o1_sft_en.jsonl"}
REQUIRED = ("medquad",)  # the pool of distractors and most answerable rows; the others add variety
NAMES = {"medquad": "MedQuAD", "pubmedqa": "PubMedQA", "openfda": "openFDA", "medical_o1": "medical-o1"}
PASSAGE_WORDS = 150  # 5 passages x 150 words + the instruction and a question stay under MAX_PROMPT_WORDS
MAX_PROMPT_WORDS = 900  # ~1,300 Gemma tokens: with the answer, a row fits max_seq_length 1536
MIN_SOURCES = 3  # a long question drops distractors down to this many passages, then the row is skipped
TARGET_WORDS = 60  # longer answers are not copied: the reader must answer quickly on a CPU
CANDIDATES = 60  # BM25 hits looked at per question; most filtering removes the question's own document
# A few generic passages ("Treatment for Crohn's disease depends on ...") top BM25 for hundreds of questions;
# capped, so the model cannot learn that a particular passage never holds the answer.
MAX_DISTRACTOR_USES = 30
NO_ANSWER_QTYPES = {"research", "support groups"}  # MedQuAD answers that are agency boilerplate, not facts

# MedQuAD text that says nothing about the question: GARD's symptom tables and GHR's link lists (cut
# from there to the end of the answer), and headings or language links (dropped as sentences).
_CUT_FROM = re.compile(r"The Human Phenotype Ontology provides|These resources address the diagnosis")
_DROP = re.compile(r"^(?:Key Points|Summary|Espa\w*ol|Signs and Symptoms Approximate number.*)$")
# openFDA: cross-references like "( 7.1 , 12.3 )" or "[ see Warnings ]" and the reporting hotline, which
# no answer needs.
_LABEL_NOISE = re.compile(r"\(\s*\d+(?:\.\d+)*(?:\s*,\s*\d+(?:\.\d+)*)*\s*\)|\[\s*see [^\]]*\]|"
                          r"To report SUSPECTED ADVERSE REACTIONS.*?"
                          r"(?:FDA-1088(?:\s*or\s*www\.fda\.gov/medwatch)?|www\.fda\.gov/medwatch)\.?", re.I)
# Sentence ends; a bullet dash after a sentence end starts a new one ("... cells). - Leukemia may ...").
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?:-\s+)?(?=[A-Z0-9(\"'\[])")
_VIGNETTE = re.compile(r"\b\d+[- ](?:year|month|week|day)s?[- ]old\b|\bpresents?\b|\bpatient\b", re.I)

# Clinician questions per label section; the first of each is used when one template is asked for.
FDA_TEMPLATES = {
    "Indications and Usage": ["What is {drug} indicated for?", "What conditions is {drug} approved to treat?"],
    "Dosage and Administration": ["What is the recommended dosage of {drug}?", "How should {drug} be dosed?"],
    "Warnings and Precautions": ["What are the warnings and precautions for {drug}?",
                                 "What safety concerns apply to {drug}?"],
    "Drug Interactions": ["Which drugs interact with {drug}?", "What drug interactions does {drug} have?"],
    "Adverse Reactions": ["What adverse reactions does {drug} cause?", "What are the common side effects of {drug}?"],
    "Contraindications": ["What are the contraindications to {drug}?", "When must {drug} not be used?"],
}
# What an unanswerable MedQuAD question was about, by question type: "None of them covers {this}."
QTYPE_TOPICS = {"symptoms": "the symptoms of {f}", "treatment": "the treatment of {f}",
                "inheritance": "how {f} is inherited", "frequency": "how common {f} is",
                "genetic changes": "the genetic changes behind {f}", "causes": "the causes of {f}",
                "exams and tests": "the tests for {f}", "outlook": "the outlook for {f}",
                "susceptibility": "who is at risk of {f}", "prevention": "the prevention of {f}",
                "stages": "the stages of {f}", "complications": "the complications of {f}"}

# A MedQuAD answer's section in note style, by question type (the notes' own headings read like these).
SECTIONS = {"information": "Overview", "symptoms": "Symptoms", "treatment": "Treatment", "inheritance": "Inheritance",
            "frequency": "How common it is", "genetic changes": "Genetic changes", "causes": "Causes",
            "exams and tests": "Tests and diagnosis", "research": "Research", "outlook": "Outlook",
            "susceptibility": "Who is at risk", "considerations": "Considerations", "prevention": "Prevention",
            "stages": "Stages", "complications": "Complications"}
# Shorthand questions about one line of a note: {name} the focus or drug, {part} the section, {a} and {b}
# two of the line's rarest words.
KEYWORD_TEMPLATES = ["{name} {part}: {a}, {b}?", "{name} - {a} {b}?", "{part} of {name}: what about {a} and {b}?",
                     "What does the {name} note say about {a} and {b}?", "{a} and {b} in {name}?"]
_KEYWORD = re.compile(r"[a-z][a-z-]{4,}")
KEYWORD_MAX_SHARE = 0.02  # of the pool's passages: a rarer word points to one line, a common one does not


@dataclass
class BuildOptions:
    seed: int = 3407
    medquad: int = 2000  # answerable MedQuAD rows (of ~14k usable); at most 2 per topic, for breadth
    # answerable PubMedQA rows; None: all train_dev rows (~350). Few: their conclusion is not a sentence of the
    # abstract, so they teach writing, not copying, and the assistant's notes hold no abstracts
    pubmedqa: int | None = 150
    openfda_templates: int = 2  # questions per label section (1 or 2): ~115 sections x 2
    unanswerable_share: float = 0.2  # of all rows: enough to learn to decline, few enough to still answer
    # of the unanswerable rows, medical-o1 vignettes; the rest MedQuAD questions. Half of them (the first
    # recipe) taught the reader that a clinical case is never answered by its sources
    o1_share: float = 0.35
    heldout_share: float = 0.05  # per origin, by whole documents (a MedQuAD topic, a pubid, a drug)
    note_share: float = 0.6  # of rows, shown in note style (see the module docstring); 0: all prose
    keyword: int = 800  # extra shorthand rows about one line of a note (MedQuAD and openFDA)
    vignette_share: float = 0.25  # of answerable MedQuAD rows, asked as a case
    siblings: int = 2  # at most this many sibling sections of the oracle's note among a note row's distractors


@dataclass(frozen=True)
class Passage:
    heading: str
    text: str
    doc: str  # the document it comes from ("medquad:0000001_1"); a distractor never shares the question's
    topic: frozenset = frozenset()  # MedQuAD focus words: a distractor about a related focus is excluded too
    name: str = ""  # what it is about (a MedQuAD focus, a drug), lower case: see Item.avoid_names
    title: str = ""  # in note style the heading is "title > section"; "" (PubMedQA): always shown as prose
    section: str = ""


@dataclass
class Item:
    """A question before its distractors are chosen."""

    question: str
    origin: str
    group: str  # held-out split unit: the same group never lands on both sides
    docs: frozenset  # documents a distractor must not come from
    topic: frozenset = frozenset()
    oracle: Passage | None = None
    answer: str = ""  # the target, with "{n}" where the oracle's number goes
    avoid_text: str = ""  # unanswerable MedQuAD: a distractor naming the focus might answer after all
    avoid_names: str = ""  # unanswerable medical-o1: its known answer; a passage about what it names would answer
    lines: tuple = ()  # the oracle's sentences, for keyword questions
    qtype: str = ""  # MedQuAD's question type; the oracle's sibling sections are the note's other types
    style: str = ""  # "note" or "prose" when fixed (keyword rows are notes); "" drawn per row
    avoid_words: tuple = ()  # keyword rows: a distractor holding both words might answer too


@dataclass
class BuildReport:
    rows: Counter = field(default_factory=Counter)  # "medquad train" -> n, ...
    skipped: Counter = field(default_factory=Counter)  # reason -> n
    missing_inputs: list[str] = field(default_factory=list)
    pool_passages: int = 0
    prompt_words_mean: float = 0.0
    prompt_words_max: int = 0

    def as_dict(self) -> dict:
        return {"rows": dict(sorted(self.rows.items())), "skipped": dict(sorted(self.skipped.items())),
                "missing_inputs": self.missing_inputs, "pool_passages": self.pool_passages,
                "prompt_words_mean": round(self.prompt_words_mean, 1), "prompt_words_max": self.prompt_words_max}


def build(data_dir: str | Path, out_dir: str | Path, options: BuildOptions | None = None,
          say: Callable[[str], None] = print) -> BuildReport:
    """Read the inputs in `data_dir`, write train.jsonl, heldout.jsonl and report.json to `out_dir`."""
    options, report, started = options or BuildOptions(), BuildReport(), time.monotonic()
    if not 0 <= options.unanswerable_share < 1:
        raise FinetuneError(f"the unanswerable share must be in [0, 1), got {options.unanswerable_share}")
    rng = random.Random(options.seed)
    inputs = {name: _read_jsonl(Path(data_dir) / file, name, report, say) for name, file in INPUTS.items()}

    pool, items = [], {}
    items["medquad"], spare = _medquad(inputs["medquad"], pool, report)
    items["pubmedqa"] = _pubmedqa(inputs["pubmedqa"], pool, report)
    items["openfda"] = _openfda(inputs["openfda"], pool, report, options.openfda_templates)
    report.pool_passages = len(pool)

    chosen = _take_per_topic(items["medquad"], options.medquad, rng)
    used_topics = {i.group for i in chosen}
    chosen = [_as_vignette(i, rng) if rng.random() < options.vignette_share else i for i in chosen]
    keyword = _keyword_items(chosen + items["openfda"], pool, options.keyword, rng)
    answerable = chosen + keyword + _sample(items["pubmedqa"], options.pubmedqa, rng) + items["openfda"]
    wanted = round(len(answerable) * options.unanswerable_share / (1 - options.unanswerable_share))
    o1 = _sample(_medical_o1(inputs["medical_o1"], report), round(wanted * options.o1_share), rng)
    fresh = [i for i in spare if i.group not in used_topics]  # topics the answerable rows never show
    unanswerable = o1 + _take_per_topic(fresh, wanted - len(o1), rng, per_topic=1)
    say(f"{len(answerable)} answerable and {len(unanswerable)} unanswerable questions; "
        f"BM25 over {len(pool):,} passages")

    queries = answerable + unanswerable
    hits = _bm25_hits(pool, [i.question for i in queries], say)
    rows, uses = [], Counter()  # pool index -> rows it is a distractor in
    sections = {}  # MedQuAD document -> its passages, by pool index: a note's sibling sections
    for index, passage in enumerate(pool):
        if passage.doc.startswith("medquad:") and passage.section:
            sections.setdefault(passage.doc, []).append(index)
    for item, candidates in zip(queries, hits):
        note = item.style == "note" or (not item.style and rng.random() < options.note_share)
        siblings = _siblings(item, sections, pool, options.siblings) if note else []
        usable = [(c, pool[c]) for c in candidates if uses[c] < MAX_DISTRACTOR_USES]
        row = _assemble(item, usable, rng, report, note, siblings)
        if row:
            uses.update(row.pop("_distractors"))
            rows.append(row)
    train, heldout = _split(rows, options.heldout_share, rng)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("heldout", heldout)):
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            for row in part:
                line = json.dumps({k: v for k, v in row.items() if not k.startswith("_")}, ensure_ascii=False)
                # input text may hold U+2028/U+2029 (PubMedQA does): str.splitlines() readers take them for line ends
                handle.write(line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n")
            report.rows.update(f"{row['origin']} {name}" for row in part)
        report.rows.update(f"{'answerable' if row['answerable'] else 'unanswerable'} {name}" for row in part)
        report.rows.update(f"{row['style']} style {name}" for row in part)
        report.rows.update(f"{row['variant']} question {name}" for row in part if row["variant"] != "plain")
    words = [row["_words"] for row in rows]
    report.prompt_words_mean, report.prompt_words_max = sum(words) / max(len(words), 1), max(words, default=0)
    (out / "report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    say(f"{len(train)} train and {len(heldout)} held-out rows written to {out} "
        f"in {time.monotonic() - started:.1f} s")
    return report


def _read_jsonl(path: Path, name: str, report: BuildReport, say) -> list[dict]:
    """The rows of one input; a missing optional input is reported and skipped, a required one is an error."""
    if not path.is_file():
        if name in REQUIRED:
            raise FinetuneError(f"{path}: file not found ({NAMES[name]} is required)")
        report.missing_inputs.append(path.name)
        say(f"{path.name} not found: no {NAMES[name]} rows")
        return []
    try:
        rows, bad = jsonl_objects(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise FinetuneError(f"{path}: cannot read it ({exc})") from None
    if bad:
        report.skipped[f"{name}_unreadable_line"] += bad
    say(f"{path.name}: {len(rows):,} rows")
    return rows


def _sentences(text: str) -> list[tuple[str, str]]:
    """(sentence, separator) pairs: line breaks are kept, so lists still read as lists."""
    units = []
    for line in text.splitlines():
        line = re.sub(r"^(?:- |Summary\s*:\s*)", "", " ".join(line.split()))  # bullets; MedlinePlus' "Summary :"
        parts = [p for p in _SENTENCE_END.split(line) if p.strip()]
        units += [(p.strip(), " ") for p in parts]
        if units:
            units[-1] = (units[-1][0], "\n")
    return units


def _trim(units: list[tuple[str, str]], limit: int = PASSAGE_WORDS) -> tuple[str, list[str]]:
    """(text of the leading sentences that fit in `limit` words, those sentences); a first sentence longer
    than the limit is cut at a word, since a passage must never break the prompt's length."""
    kept, words = [], 0
    for sentence, sep in units:
        n = len(sentence.split())
        if words + n > limit:
            break
        kept.append((sentence, sep))
        words += n
    if not kept and units:
        return " ".join(units[0][0].split()[:limit]) + " ...", []
    return "".join(s + sep for s, sep in kept).strip(), [s for s, _ in kept]


def _cite(sentences: list[str]) -> str:
    """Each sentence with "[{n}]" before its final stop: the assistant's checker splits answers at ". "
    followed by a capital, so a marker after the stop would be read as the start of the next sentence."""
    cited = []
    for s in sentences:
        s = s.rstrip()
        cited.append(f"{s[:-1].rstrip()} [{{n}}]{s[-1]}" if s[-1] in ".!?" else f"{s} [{{n}}].")
    return " ".join(cited)


def _lead(sentences: list[str], max_words: int = TARGET_WORDS) -> list[str]:
    """The first one or two sentences that carry content (a full sentence of 5+ words, no heading or
    question), as long as they stay short; [] when the first is already too long."""
    def content(s: str) -> bool:  # not a list's lead-in cut at its first number ("... conditions: 1.")
        return len(s.split()) >= 5 and s[-1] in ".!" and not re.search(r":\s*\d{1,2}\.$", s)

    first = next((i for i, s in enumerate(sentences) if content(s)), None)
    if first is None or len(sentences[first].split()) > max_words:
        return []
    lead = sentences[first:first + 1]
    after = sentences[first + 1:first + 2]  # only the very next sentence: a later one may be off the point
    if after and content(after[0]) and len(lead[0].split()) + len(after[0].split()) <= max_words:
        lead += after
    return lead


def _words(text: str) -> frozenset:
    return frozenset(re.findall(r"[a-z0-9]+", text.lower()))


def _related(a: frozenset, b: frozenset) -> bool:
    """Two MedQuAD foci name the same thing ("Adult ALL" vs "acute lymphoblastic leukemia (ALL)")."""
    return bool(a and b) and (a <= b or b <= a or len(a & b) / len(a | b) >= 0.5)


def _question(text: str) -> str:
    """MedQuAD's generated questions, as a person would type them: "What is (are) X ?" -> "What is X?"."""
    text = " ".join(text.split()).replace("What is (are) ", "What is ")
    return re.sub(r"\s+\?$", "?", text)


def _medquad(rows: list[dict], pool: list[Passage], report: BuildReport) -> tuple[list[Item], list[Item]]:
    """(answerable items, spare questions for unanswerable rows); every usable answer joins the pool."""
    answerable, spare, seen = [], [], set()
    for row in rows:
        question, answer = _question(str(row.get("question") or "")), str(row.get("answer") or "")
        focus, qtype = str(row.get("focus") or "").strip(), str(row.get("qtype") or "").strip()
        if not (question and answer and focus):
            report.skipped["medquad_missing_fields"] += 1
            continue
        cut = _CUT_FROM.search(answer)
        units, seen_sentences = [], set()
        for sentence, sep in _sentences(answer[:cut.start()] if cut else answer):
            # Headings and questions say nothing; CancerGov repeats each key point as a heading later on.
            if not (_DROP.match(sentence) or sentence.endswith("?") or sentence in seen_sentences):
                units.append((sentence, sep))
                seen_sentences.add(sentence)
        text, kept = _trim(units)
        if len(text.split()) < 5:
            report.skipped["medquad_boilerplate_answer"] += 1
            continue
        doc = f"medquad:{row.get('doc_id') or focus}"
        topic = _words(focus)
        oracle = Passage(f"{focus} ({qtype})" if qtype else focus, text, doc, topic, focus.casefold(), focus,
                         SECTIONS.get(qtype, qtype.capitalize()))
        pool.append(oracle)
        key = question.casefold()
        if key in seen:  # the same question in two collections: one row, or the trainer drops the other
            report.skipped["medquad_duplicate_question"] += 1
            continue
        seen.add(key)
        if qtype in NO_ANSWER_QTYPES:
            report.skipped["medquad_boilerplate_qtype"] += 1
            continue
        group = "medquad:" + " ".join(sorted(topic))
        about = QTYPE_TOPICS.get(qtype, "{f}").format(f=focus)
        # Unanswerable: the same question without its oracle; a distractor that names the focus might
        # answer it after all, so those are left out too.
        spare.append(Item(question, "medquad", group, frozenset({doc}), topic, None,
                          f"{NOT_IN_SOURCES} None of them covers {about}.", avoid_text=focus.casefold()))
        lead = _lead(kept)
        if lead:
            answerable.append(Item(question, "medquad", group, frozenset({doc}), topic, oracle, _cite(lead),
                                   lines=tuple(kept), qtype=qtype))
        else:
            report.skipped["medquad_no_short_answer"] += 1
    return answerable, spare


def _pubmedqa(rows: list[dict], pool: list[Passage], report: BuildReport) -> list[Item]:
    items = []
    for row in rows:
        if row.get("official_split") != "train_dev":  # the DATA RULE in the module docstring
            report.skipped["pubmedqa_not_train_dev"] += 1
            continue
        pubid, question = str(row.get("pubid") or ""), " ".join(str(row.get("question") or "").split())
        contexts, decision = row.get("contexts"), str(row.get("final_decision") or "").lower()
        long_answer = str(row.get("long_answer") or "")
        if not (pubid and question and isinstance(contexts, list) and contexts and long_answer
                and decision in ("yes", "no", "maybe")):
            report.skipped["pubmedqa_missing_fields"] += 1
            continue
        units = _sentences("\n".join(map(str, contexts)))
        # Abstracts run ~200 words; the results, which the conclusion rests on, come last. Keep the
        # opening sentence for what was studied and as many of the last sentences as fit.
        head, tail = units[:1], []
        budget = PASSAGE_WORDS - sum(len(s.split()) for s, _ in head)
        for sentence, sep in reversed(units[1:]):
            budget -= len(sentence.split())
            if budget < 0:
                break
            tail.insert(0, (sentence, sep))
        gap = len(head) + len(tail) < len(units)
        text = _trim(head)[0] + ("\n...\n" if gap else "\n") + "".join(s + sep for s, sep in tail).strip()
        doc = f"pubmed:{pubid}"
        oracle = Passage(f"PubMed abstract {pubid}", text.strip(), doc)
        pool.append(oracle)
        conclusion = _lead([s for s, _ in _sentences(long_answer)], max_words=80)
        if not conclusion:
            report.skipped["pubmedqa_long_conclusion"] += 1
            continue
        answer = f"{decision.capitalize()}. " + _cite(conclusion)
        items.append(Item(question, "pubmedqa", doc, frozenset({doc}), oracle=oracle, answer=answer))
    return items


def _openfda(rows: list[dict], pool: list[Passage], report: BuildReport, templates: int) -> list[Item]:
    items = []
    for row in rows:
        drug, section, text = (" ".join(str(row.get(k) or "").split()) for k in ("drug", "section", "text"))
        if not (drug and section and text):
            report.skipped["openfda_missing_fields"] += 1
            continue
        text = re.sub(r"\s+(?=[.,;:](?:\s|$))", "", _LABEL_NOISE.sub("", text))  # "weekly ( 2.1 )." -> "weekly."
        # A leading section title ("Drug Interactions: ...", "Drug Interactions Furosemide may ...") repeats the
        # heading; "Adverse reactions are ..." is a sentence and stays.
        title = re.match(rf"\s*(?:\d+(?:\.\d+)*\s+)?({re.escape(section)})(\s*:)?\s*(?=(\S?))", text, flags=re.I)
        if title and (title.group(2) or title.group(1).isupper() or title.group(3).isupper()):
            text = text[title.end():]
        passage, kept = _trim(_sentences(" ".join(text.split())))
        doc = f"openfda:{drug.lower()}:{section.lower()}"
        oracle = Passage(f"{drug.title()} label > {section}", passage, doc, name=drug.casefold(), title=drug.title(),
                         section=section)
        pool.append(oracle)
        lead = _lead(kept)
        if not lead:
            report.skipped["openfda_no_short_answer"] += 1
            continue
        questions = FDA_TEMPLATES.get(section, ["What does the {section} section of the {drug} label say?"])
        for template in questions[:templates]:
            items.append(Item(template.format(drug=drug, section=section), "openfda", f"openfda:{drug.lower()}",
                              frozenset({doc}), oracle=oracle, answer=_cite(lead), lines=tuple(kept)))
    return items


def _medical_o1(rows: list[dict], report: BuildReport) -> list[Item]:
    items, seen = [], set()
    for row in rows:
        question = " ".join(str(row.get("Question") or "").split())
        if not question or question.casefold() in seen:
            report.skipped["medical_o1_missing_or_duplicate"] += 1
            continue
        seen.add(question.casefold())
        topic = "this clinical case" if _VIGNETTE.search(question) else "this question"
        items.append(Item(question, "medical_o1", f"o1:{len(items)}", frozenset(),
                          answer=f"{NOT_IN_SOURCES} None of them covers {topic}.",
                          avoid_names=" ".join(str(row.get("Response") or "").split()).casefold()))
    return items


def _as_vignette(item: Item, rng: random.Random) -> Item:
    """The same question asked about a case: "A 54-year-old woman with Quarry lung: what are the treatments?"."""
    who = rng.choice(["man", "woman", "boy", "girl"])
    age = rng.randint(18, 85) if who in ("man", "woman") else rng.randint(2, 15)
    question = item.question[0].lower() + item.question[1:]
    article = "An" if str(age).startswith("8") or age in (11, 18) else "A"
    return Item(f"{article} {age}-year-old {who} with {item.oracle.title}: {question}", item.origin, item.group, item.docs, item.topic,
                item.oracle, item.answer, lines=item.lines, qtype=item.qtype)


def _keyword_items(items: list[Item], pool: list[Passage], n: int, rng: random.Random) -> list[Item]:
    """Up to `n` shorthand questions, each about one line of a note that is not its first (see the module
    docstring): two of the line's rare words (in at most KEYWORD_MAX_SHARE of the pool's passages, in no
    other line of the note, not the focus's or the drug's own) make the question; the line is the answer."""
    if n <= 0:
        return []
    frequency = Counter(w for p in pool for w in set(_KEYWORD.findall(p.text.lower())))
    limit = max(2, KEYWORD_MAX_SHARE * len(pool))
    made, order, done = [], [i for i in items if i.oracle and i.oracle.title and len(i.lines) >= 2], set()
    rng.shuffle(order)
    for item in order:
        if len(made) >= n:
            break
        if item.oracle.doc in done:  # openFDA asks about each section twice: one keyword question per passage
            continue
        done.add(item.oracle.doc)
        name_words = _words(item.oracle.title)
        lines = list(item.lines)
        options = []
        for index, line in enumerate(lines[1:], 1):
            if not 6 <= len(line.split()) <= TARGET_WORDS or line[-1] not in ".!":
                continue
            elsewhere = set().union(*(_KEYWORD.findall(x.lower()) for j, x in enumerate(lines) if j != index))
            rare = sorted({w for w in _KEYWORD.findall(line.lower())
                           if w not in elsewhere and w not in name_words and frequency[w] <= limit},
                          key=lambda w: (frequency[w], w))
            if len(rare) >= 2:
                options.append((line, rare[:2]))
        if not options:
            continue
        line, (a, b) = rng.choice(options)
        part = item.oracle.section.lower()
        question = rng.choice(KEYWORD_TEMPLATES).format(name=item.oracle.title, part=part, a=a, b=b)
        made.append(Item(question[0].upper() + question[1:], item.origin, item.group, item.docs, item.topic,
                         item.oracle, _cite([line]), lines=item.lines, qtype=item.qtype, style="note",
                         avoid_words=(a, b)))
    return made


def _siblings(item: Item, sections: dict[str, list[int]], pool: list[Passage], most: int) -> list[tuple[int, Passage]]:
    """Other sections of the MedQuAD oracle's own note (not its overview, which may answer anything), by pool
    index: a note row's hardest distractors, about the same subject as the oracle."""
    if not (item.oracle and item.qtype) or most <= 0:
        return []
    found = []
    for index in sections.get(item.oracle.doc, []):
        p = pool[index]
        if p.section in (item.oracle.section, SECTIONS["information"]) or p.text == item.oracle.text:
            continue
        if item.avoid_words and all(w in p.text.lower() for w in item.avoid_words):
            continue
        found.append((index, p))
    return found[:most]


def _as_note(p: Passage, layout: float) -> tuple[str, str]:
    """(heading, text) of a passage as the starter notes read: "Title > Section", one line per sentence; with
    `layout` < 0.6 every line is a "- " item, else the first line is a paragraph and the rest are items. A
    passage without a title (a PubMed abstract) stays as it is."""
    if not p.title:
        return p.heading, p.text
    lines = [sentence for sentence, _ in _sentences(p.text)]
    if layout < 0.6:
        text = "\n".join(f"- {line}" for line in lines)
    else:
        text = "\n".join(lines[:1] + [f"- {line}" for line in lines[1:]])
    return f"{p.title} > {p.section}", text


def _sample(items: list[Item], n: int | None, rng: random.Random) -> list[Item]:
    return list(items) if n is None or n >= len(items) else rng.sample(items, n)


def _take_per_topic(items: list[Item], n: int, rng: random.Random, per_topic: int = 2) -> list[Item]:
    """`n` items in a seeded order, at most `per_topic` per MedQuAD topic: breadth over depth."""
    order, taken, count = list(items), [], Counter()
    rng.shuffle(order)
    for item in order:
        if len(taken) >= n:
            break
        if count[item.group] < per_topic:
            count[item.group] += 1
            taken.append(item)
    return taken


def _bm25_hits(pool: list[Passage], queries: list[str], say) -> list[list[int]]:
    """Pool indices of the top BM25 hits per query. bm25s directly, as index/sparse.py uses it (through
    llama-index): finetune may import nothing of ours (DESIGN.md), and these few lines are all it needs."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    corpus = bm25s.tokenize([f"{p.heading}\n{p.text}" for p in pool], stopwords="en", stemmer=stemmer,
                            show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    say(f"Retrieving distractors for {len(queries):,} questions")
    tokens = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
    found, _ = retriever.retrieve(tokens, k=min(CANDIDATES, len(pool)), show_progress=False)
    return [list(map(int, row)) for row in found]


def _assemble(item: Item, candidates: list[tuple[int, Passage]], rng: random.Random, report: BuildReport,
              note: bool = False, siblings: list[tuple[int, Passage]] = ()) -> dict | None:
    """The row for one question: 3-4 distractors (4-5 without an oracle), the oracle at a seeded place.
    `candidates` are (pool index, passage), best BM25 hit first; `siblings` (sections of the oracle's own
    note) come before them. `note`: every passage is shown in note style (`_as_note`)."""
    distractors, texts = list(siblings), {item.oracle.text} if item.oracle else set()
    texts.update(p.text for _, p in siblings)
    for index, p in candidates:
        if p.doc in item.docs or _related(p.topic, item.topic) or p.text in texts \
                or (item.avoid_text and item.avoid_text in p.text.casefold()) \
                or (item.avoid_words and all(w in p.text.lower() for w in item.avoid_words)) \
                or (item.avoid_names and p.name and re.search(rf"\b{re.escape(p.name)}\b", item.avoid_names)):
            continue
        distractors.append((index, p))
        texts.add(p.text)
    total = rng.choice((4, 5))  # the same counts with and without an oracle: the number of passages is no tell
    place = rng.random()  # drawn before any trimming, so the rng sequence never depends on lengths
    layout = rng.random()  # how a note's lines are laid out
    distractors = distractors[:total - (item.oracle is not None)]
    while True:
        passages = [p for _, p in distractors]
        if item.oracle:
            passages.insert(int(place * (len(passages) + 1)), item.oracle)
        shown = [_as_note(p, layout) if note else (p.heading, p.text) for p in passages]
        sources = [SourceText(n, heading, text) for n, (heading, text) in enumerate(shown, 1)]
        words = len(build_prompt(item.question, sources).split())
        if words <= MAX_PROMPT_WORDS or len(passages) <= MIN_SOURCES:
            break
        distractors.pop()  # the weakest BM25 hit goes first
    if words > MAX_PROMPT_WORDS:
        report.skipped[f"{item.origin}_prompt_too_long"] += 1
        return None
    if len(passages) < MIN_SOURCES:
        report.skipped[f"{item.origin}_too_few_distractors"] += 1
        return None
    if item.oracle:
        number = passages.index(item.oracle) + 1
        reasoning = f"Source [{number}] ({sources[number - 1].heading}) answers the question."
        response = item.answer.replace("{n}", str(number))
    else:
        number, reasoning, response = None, "None of the sources answers the question.", item.answer
    return {"Question": item.question, "Complex_CoT": reasoning, "Response": response,
            "sources": [{"number": s.number, "heading": s.heading, "text": s.text} for s in sources],
            "origin": item.origin, "answerable": item.oracle is not None, "oracle": number,
            "style": "note" if note else "prose", "variant": _variant(item),
            "_group": item.group, "_words": words, "_distractors": [index for index, _ in distractors]}


def _variant(item: Item) -> str:
    """"keyword", "vignette" or "plain": what kind of question the row asks (see the module docstring)."""
    if item.avoid_words:
        return "keyword"
    return "vignette" if item.origin == "medquad" and re.match(r"An? \d+-year-old ", item.question) else "plain"


def _split(rows: list[dict], share: float, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """(train, held out), shuffled: per origin, whole groups go to the held-out side until it holds `share`."""
    heldout_groups = set()
    for origin in sorted({r["origin"] for r in rows}):
        sizes = Counter(r["_group"] for r in rows if r["origin"] == origin)
        groups, target, taken = sorted(sizes), share * sum(sizes.values()), 0
        rng.shuffle(groups)
        for group in groups:
            if taken >= target:
                break
            heldout_groups.add(group)
            taken += sizes[group]
    train = [r for r in rows if r["_group"] not in heldout_groups]
    heldout = [r for r in rows if r["_group"] in heldout_groups]
    rng.shuffle(train)
    return train, heldout
