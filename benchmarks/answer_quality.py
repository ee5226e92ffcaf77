"""Does the answer deliver the fact? Labelled clinical questions over the starter notes, on the defaults.

    .venv/bin/python benchmarks/answer_quality.py --split test [--model none|base] [--adapter DIR] \
        [--home DIR] [--limit N] [--label NAME] [--blind]

benchmarks/data/answer_questions.jsonl holds clinical questions written for the project, each with the
note(s) that answer it, regexes for the expected fact and the question's subject, plus off-topic
questions; `split` divides them into a dev half (the evidence reader's weights were tuned on it), a
test half (reported), and five sets written later by helpers blind to the rest (docs/benchmarks.md):
`fresh` and `blind2` (used to find faults since), `blind` (read after its run), `blind3` (run to choose
between variants in stops 25 and 26, a few answers read) and `blind4` (run four times in stop 26: the start
code, one rejected variant, two later commits; the questions it refused were seen once); `blind5` (stop 32: run
once blind, results/answer_quality_none_blind5_first.json, then used to find faults). `near` holds 40
near-topic medical questions the starter notes do not answer, written blind to the assistant's answers, to
measure refusals. For each question the agent answers as `medassist ask` would, and we count:

- fact delivered: a fact regex matches the answer shown (Markdown stripped);
- right source cited: a citation the answer uses comes from an expected note;
- misattributed quotes: a sentence shown (quoted, or the model's) that names neither the question's subject
  nor comes from an expected note (about another drug or score, read as if it answered this question);
- off-topic abstained; answers in generated mode; answers where the model declined ("The sources do not
  say.", the tuned reader's trained words: the quotes stand); the model's sentences supported by the check,
  declines aside, and in the answers shown;
- ALCE citation recall and precision (Gao et al. 2023, "Enabling LLMs to generate text with
  citations"), our grounding checker as the judge instead of an NLI model: a statement is recalled
  when its cited passages together support it; a citation is precise unless it is irrelevant (it
  does not support the statement alone and the statement stays supported without it);
- latency per stage (route, retrieve, evidence, generate) and to the evidence answer.

--model none answers from the evidence reader alone (no model loaded); base is the packaged
Gemma-3-270M; --adapter adds a PEFT adapter (the tuned reader). Writes results/answer_quality_<label>.json.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from common import machine, machine_line, read_jsonl, save, summary, table

from assistant.agent import Agent
from finetune.reader_data import NOT_IN_SOURCES
from corpus import STARTER_DIR

HERE = Path(__file__).parent
_MARKDOWN = re.compile(r"[*_`|>#]+")


def plain(text: str) -> str:
    """Text as a reader sees it: Markdown marks dropped, spacing collapsed."""
    return " ".join(_MARKDOWN.sub(" ", text).split())


def shown_text(answer) -> str:
    return plain(answer.answer)


def has_fact(facts: list[str], text: str) -> bool:
    """One of a question's fact regexes matches the text."""
    return any(re.search(f, text, re.I) for f in facts)


def note_titles() -> dict[str, str]:
    """Starter note file stem -> its title (citations carry titles)."""
    titles = {}
    for path in STARTER_DIR.glob("*.md"):
        match = re.search(r"^title:\s*(.+)$", path.read_text(encoding="utf-8"), re.M)
        titles[path.stem] = match.group(1).strip() if match else path.stem
    return titles


def mentions(subject: str, text: str) -> bool:
    """Every word of the subject (4+ letters, or with a digit) appears in the text: "curb-65", "apixaban"."""
    words = [w for w in re.findall(r"[a-z0-9]+", subject.lower()) if len(w) >= 4 or any(c.isdigit() for c in w)]
    lowered = text.lower()
    return bool(words) and all(w in lowered for w in words)


def score(row: dict, answer, titles: dict[str, str], checker) -> dict:
    """The measures of one answer (see the module docstring)."""
    expected_titles = {titles[s] for s in row["sources"]}
    by_n = {c.n: c for c in answer.citations}
    used = sorted({n for s in answer.sentences for n in s.citations if n in by_n})
    text = shown_text(answer)
    result = {"id": row["id"], "kind": row["kind"], "mode": answer.mode, "abstained": answer.abstained,
              "timings": answer.timings}
    if row["kind"] == "off_topic":
        return result
    result["fact"] = has_fact(row["facts"], text)
    result["source"] = any(by_n[n].title in expected_titles for n in used)
    # A sentence shown (quoted or generated) that cites no expected note and does not name the question's subject.
    result["misattributed"] = [s.text for s in answer.sentences
                               if not any(by_n[n].title in expected_titles for n in s.citations if n in by_n)
                               and not mentions(row["subject"], s.text)]
    # ALCE-style citation recall / precision over the statements shown, the checker as the judge.
    statements = []
    for s in answer.sentences:
        quote = s.reason == "quoted from the source"  # "About › Section: text [n]", also under a model's answer
        claim = re.sub(r"\s*\[\d+(?:,\s*\d+)*\]", "", s.text.split(": ", 1)[-1] if quote else s.text)
        cited = [by_n[n].text for n in s.citations if n in by_n]
        recalled = bool(cited) and checker.check(claim, cited).supported
        precise = []
        for i, passage in enumerate(cited):
            alone = checker.check(claim, [passage]).supported
            rest = cited[:i] + cited[i + 1:]
            precise.append(alone or not (rest and checker.check(claim, rest).supported))
        statements.append({"recalled": recalled, "precise": precise})
    result["statements"] = statements
    result["generated"] = [{"supported": s.supported, "text": s.text, "reason": s.reason} for s in answer.generated]
    # The reader's trained "The sources do not say.": a decline, not a claim; the quotes stand.
    result["declined"] = bool(answer.generated) and answer.generated[0].text.startswith(NOT_IN_SOURCES)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="test",
                        choices=["dev", "test", "fresh", "blind", "blind2", "blind3", "blind4", "blind5", "near",
                                 "all"])
    parser.add_argument("--model", choices=["none", "base"], default="base")
    parser.add_argument("--adapter", help="a PEFT adapter folder for the base model (the tuned reader)")
    parser.add_argument("--home", help="a home with the starter notes and the converted model (default: new)")
    parser.add_argument("--limit", type=int, help="at most this many questions (a quick look)")
    parser.add_argument("--label", help="results file suffix (default: <model>_<split>)")
    parser.add_argument("--show", action="store_true", help="print every answer")
    parser.add_argument("--blind", action="store_true",
                        help="print no question or answer text while running, only counts (a set kept unread "
                             "stays unread; the results file still holds the answers)")
    args = parser.parse_args()
    info = machine()
    home = Path(args.home or tempfile.mkdtemp(prefix="medassist-answers-"))
    from assistant.config import load_config

    config = load_config(home, adapter=args.adapter)
    kb = config.knowledge_base()
    kb.ensure_starter()
    factory = None if args.model == "none" else config.backend_factory()
    agent = Agent(kb, factory, k=config.k, settings=config.generation_settings())
    start = time.perf_counter()
    if factory:
        agent.backend  # noqa: B018  (load the model before the clock, as a running chat has it loaded)
    load_s = time.perf_counter() - start
    agent.ask("warm-up: metformin dose")  # first search builds caches; not a user's question

    rows = [r for r in read_jsonl(HERE / "data" / "answer_questions.jsonl") if args.split in ("all", r["split"])]
    rows = rows[: args.limit] if args.limit else rows
    titles, results = note_titles(), []
    # The gate the model's answer must pass to replace the quotes (its best sentence against the best quote, by
    # the evidence reader's score), recorded so that another margin can be judged without running again.
    margins, against_quotes = [], agent._against_quotes
    agent._against_quotes = lambda *args: margins.append(against_quotes(*args)) or margins[-1]
    for number, row in enumerate(rows, start=1):
        evidence_at, margins[:] = [], []
        t = time.perf_counter()
        answer = agent.ask(row["question"], on_evidence=lambda a: evidence_at.append(
            (time.perf_counter() - t, shown_text(a))))
        result = score(row, answer, titles, agent.checker)
        result["evidence_s"] = evidence_at[0][0] if evidence_at else None
        if row["kind"] == "clinical" and evidence_at:
            supported = " ".join(g.text for g in answer.generated if g.supported)
            result["evidence_fact"] = has_fact(row["facts"], evidence_at[0][1])
            result["generated_fact"] = bool(supported) and has_fact(row["facts"], supported)
            result["margin"] = round(margins[0], 4) if margins else None
        results.append(result)
        flag = "" if row["kind"] == "off_topic" else ("fact " if result["fact"] else "MISS ") + (
            "src" if result["source"] else "SRC?")
        print(f"[{number}/{len(rows)}] {answer.mode:<10} {answer.timings['total_s']:5.1f} s {flag:<9} "
              f"{'' if args.blind else row['question'][:70]}", flush=True)
        if args.blind:
            continue
        if args.show or (row["kind"] == "clinical" and not result["fact"]):
            print("    " + shown_text(answer)[:400])
        for quote in result.get("misattributed", []):
            print(f"    MISATTRIBUTED: {quote[:160]}")

    report = summarise(results)
    label = args.label or f"{'adapter' if args.adapter else args.model}_{args.split}"
    print(f"\n{machine_line(info)}\nsplit {args.split}, model {args.model}"
          f"{' + adapter ' + args.adapter if args.adapter else ''}, model load {load_s:.1f} s\n")
    print(table(["measure", "value"], [[k, v] for k, v in report.items()]))
    save(f"answer_quality_{label}", {"machine": info, "split": args.split, "model": args.model,
                                     "adapter": args.adapter, "load_s": round(load_s, 2), "report": report,
                                     "questions": results})


def summarise(results: list[dict]) -> dict:
    clinical = [r for r in results if r["kind"] == "clinical"]
    off = [r for r in results if r["kind"] == "off_topic"]
    answered = [r for r in clinical if not r["abstained"]]
    statements = [s for r in clinical for s in r["statements"]]
    citations = [p for s in statements for p in s["precise"]]
    generated = [g for r in clinical if not r.get("declined") for g in r["generated"]]
    shown = [g for r in answered if r["mode"] == "generated" for g in r["generated"]]
    share = lambda part, whole: f"{part}/{whole} = {part / whole:.2f}" if whole else "n/a"  # noqa: E731
    evidence = [r["evidence_s"] for r in clinical if r["evidence_s"] is not None]
    totals = [r["timings"]["total_s"] for r in results]
    stages = {stage: summary([r["timings"].get(stage, 0.0) for r in clinical or results])["median"]  # `near`: none
              for stage in ("route_s", "retrieve_s", "evidence_s", "generate_s", "check_s")}
    return {
        "clinical questions": len(clinical),
        "fact delivered": share(sum(r["fact"] for r in clinical), len(clinical)),
        "right source cited": share(sum(r["source"] for r in clinical), len(clinical)),
        "misattributed quotes": sum(len(r["misattributed"]) for r in clinical),
        "clinical abstained": share(len(clinical) - len(answered), len(clinical)),
        "off-topic abstained": share(sum(r["abstained"] for r in off), len(off)),
        "answers in generated mode": share(sum(r["mode"] == "generated" for r in answered), len(answered)),
        "model declined (\"the sources do not say\")": share(sum(r.get("declined", False) for r in answered),
                                                          len(answered)),
        "generated sentences supported (declines aside)": share(sum(g["supported"] for g in generated), len(generated)),
        "... of answers in generated mode": share(sum(g["supported"] for g in shown), len(shown)),
        "ALCE citation recall": share(sum(s["recalled"] for s in statements), len(statements)),
        "ALCE citation precision": share(sum(citations), len(citations)),
        "evidence on screen (s) p50 / p95": f"{summary(evidence).get('median')} / {summary(evidence).get('p95')}",
        "ask total (s) p50 / p95": f"{summary(totals).get('median')} / {summary(totals).get('p95')}",
        "stage medians (s)": ", ".join(f"{k[:-2]} {v}" for k, v in stages.items()),
    }


if __name__ == "__main__":
    main()
