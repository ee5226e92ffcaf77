"""Validate the hand-labelled answer and held-out routing question sets.

Run from the repository root:

    python3 benchmarks/data/check_answer_questions.py

answer_questions.jsonl (one JSON object per line) is checked for:
  * valid JSON objects with the required fields and types;
  * unique ids;
  * allowed values of split (dev/test/fresh/blind/blind2/blind3/blind4/near), kind (clinical/off_topic), route
    (diagnosis/treatment/medication/general) and type (dose, first_line,
    test_or_threshold, score, duration, contraindication, monitoring, other,
    off_topic);
  * clinical rows: a non-empty lower-case subject, at least one source and one
    fact; every source stem names a file corpus/starter/<stem>.md;
  * every fact is a Python regex that compiles and matches the text of at least
    one of the row's expected source notes. Matching is case-insensitive and
    runs on the note text after Markdown bold markers (``**``) and table pipes
    (``|``) are removed and all whitespace runs are collapsed to one space, so a
    regex can match a table cell ("Apixaban 5 mg twice daily 2.5 mg ...") the
    way it reads;
  * the question does not copy a note verbatim (the normalised question text
    must not occur inside any starter note);
  * off_topic rows: type "off_topic", route "general", empty subject, sources
    and facts.

route_questions_heldout.jsonl is checked for valid JSON, the fields question,
route and style, allowed route values, no duplicate questions, and that no
question text also appears in benchmarks/data/route_questions.jsonl (the
router's own labelled set; compared case-insensitively with whitespace
collapsed).

Counts per split and type (and per route) are printed as tables. The script
exits 1 on any problem, printing one message per problem that names the row id
(or line number) and the field. Standard library only.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "benchmarks" / "data"
STARTER = ROOT / "corpus" / "starter"
ANSWER_FILE = DATA / "answer_questions.jsonl"
HELDOUT_FILE = DATA / "route_questions_heldout.jsonl"
ROUTER_FILE = DATA / "route_questions.jsonl"

SPLITS = ("dev", "test", "fresh", "blind", "blind2", "blind3", "blind4", "near")
KINDS = ("clinical", "off_topic")
ROUTES = ("diagnosis", "treatment", "medication", "general")
TYPES = ("dose", "first_line", "test_or_threshold", "score", "duration",
         "contraindication", "monitoring", "other")
REQUIRED = {"id": str, "split": str, "kind": str, "question": str, "route": str,
            "type": str, "subject": str, "sources": list, "facts": list}
HELDOUT_REQUIRED = {"question": str, "route": str, "style": str}


def normalise_note(text: str) -> str:
    """Note text as facts are matched against: no ** or |, whitespace collapsed."""
    text = text.replace("**", "").replace("|", " ")
    return re.sub(r"\s+", " ", text).strip()


def normalise_question(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def load_jsonl(path: Path, problems: list[str]) -> list[tuple[int, object]]:
    rows = []
    if not path.exists():
        problems.append(f"{path.relative_to(ROOT)}: file not found")
        return rows
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((lineno, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(f"{path.name} line {lineno}: invalid JSON ({exc})")
    return rows


def check_answer_rows(problems: list[str]) -> list[dict]:
    notes = {p.stem: normalise_note(p.read_text(encoding="utf-8"))
             for p in sorted(STARTER.glob("*.md"))}
    all_notes_lower = [t.lower() for t in notes.values()]
    seen_ids: set[str] = set()
    good = []
    for lineno, row in load_jsonl(ANSWER_FILE, problems):
        if not isinstance(row, dict):
            problems.append(f"answer line {lineno}: not a JSON object")
            continue
        rid = row.get("id", f"line {lineno}")
        bad = False
        for field, typ in REQUIRED.items():
            if field not in row:
                problems.append(f"{rid}: missing field '{field}'")
                bad = True
            elif not isinstance(row[field], typ):
                problems.append(f"{rid}: field '{field}' should be {typ.__name__}")
                bad = True
        if bad:
            continue
        if rid in seen_ids:
            problems.append(f"{rid}: duplicate id")
        seen_ids.add(rid)
        if not row["question"].strip():
            problems.append(f"{rid}: field 'question' is empty")
        if row["split"] not in SPLITS:
            problems.append(f"{rid}: field 'split' is {row['split']!r}, not one of {SPLITS}")
        if row["kind"] not in KINDS:
            problems.append(f"{rid}: field 'kind' is {row['kind']!r}, not one of {KINDS}")
        if row["route"] not in ROUTES:
            problems.append(f"{rid}: field 'route' is {row['route']!r}, not one of {ROUTES}")
        if row["kind"] == "off_topic":
            if row["type"] != "off_topic":
                problems.append(f"{rid}: field 'type' must be 'off_topic' for off_topic rows")
            if row["route"] != "general":
                problems.append(f"{rid}: field 'route' must be 'general' for off_topic rows")
            for field in ("sources", "facts"):
                if row[field]:
                    problems.append(f"{rid}: field '{field}' must be empty for off_topic rows")
            if row["subject"]:
                problems.append(f"{rid}: field 'subject' must be empty for off_topic rows")
            good.append(row)
            continue
        # clinical rows
        if row["type"] not in TYPES:
            problems.append(f"{rid}: field 'type' is {row['type']!r}, not one of {TYPES}")
        if not row["subject"].strip() or row["subject"] != row["subject"].lower():
            problems.append(f"{rid}: field 'subject' must be non-empty lower case")
        if not row["sources"]:
            problems.append(f"{rid}: field 'sources' is empty")
        if not row["facts"]:
            problems.append(f"{rid}: field 'facts' is empty")
        texts = []
        for stem in row["sources"]:
            if not isinstance(stem, str) or stem not in notes:
                problems.append(f"{rid}: field 'sources' names {stem!r}, not a file in corpus/starter/")
            else:
                texts.append(notes[stem])
        for fact in row["facts"]:
            if not isinstance(fact, str) or not fact:
                problems.append(f"{rid}: field 'facts' holds a non-string or empty entry")
                continue
            try:
                rx = re.compile(fact, re.IGNORECASE)
            except re.error as exc:
                problems.append(f"{rid}: field 'facts' regex {fact!r} does not compile ({exc})")
                continue
            if texts and not any(rx.search(t) for t in texts):
                problems.append(f"{rid}: field 'facts' regex {fact!r} matches none of {row['sources']}")
        q = normalise_question(row["question"])
        if len(q) > 25 and any(q.rstrip("?.") in t for t in all_notes_lower):
            problems.append(f"{rid}: field 'question' copies note text verbatim")
        good.append(row)
    return good


def check_heldout(problems: list[str]) -> list[dict]:
    router_texts: set[str] = set()
    if ROUTER_FILE.exists():
        # Compare against every string value of each row, whatever the schema.
        for line in ROUTER_FILE.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                router_texts.add(normalise_question(line))
                continue
            values = obj.values() if isinstance(obj, dict) else [obj]
            router_texts.update(normalise_question(v) for v in values if isinstance(v, str))
    seen: dict[str, int] = {}
    good = []
    for lineno, row in load_jsonl(HELDOUT_FILE, problems):
        tag = f"heldout line {lineno}"
        if not isinstance(row, dict):
            problems.append(f"{tag}: not a JSON object")
            continue
        bad = False
        for field, typ in HELDOUT_REQUIRED.items():
            if not isinstance(row.get(field), typ) or not row.get(field, "").strip():
                problems.append(f"{tag}: field '{field}' missing, empty or not a string")
                bad = True
        if bad:
            continue
        if row["route"] not in ROUTES:
            problems.append(f"{tag}: field 'route' is {row['route']!r}, not one of {ROUTES}")
        q = normalise_question(row["question"])
        if q in seen:
            problems.append(f"{tag}: field 'question' duplicates line {seen[q]}")
        seen[q] = lineno
        if q in router_texts:
            problems.append(f"{tag}: field 'question' also appears in route_questions.jsonl")
        good.append(row)
    return good


def print_table(title: str, rows: list[dict], key: str, cols: tuple[str, ...]) -> None:
    counts = Counter((r[key], r["split"]) for r in rows)
    keys = sorted({r[key] for r in rows})
    print(f"\n{title}")
    print(f"  {key:<20}" + "".join(f"{c:>7}" for c in cols) + f"{'total':>7}")
    for k in keys:
        vals = [counts[(k, c)] for c in cols]
        print(f"  {k:<20}" + "".join(f"{v:>7}" for v in vals) + f"{sum(vals):>7}")
    tot = [sum(counts[(k, c)] for k in keys) for c in cols]
    print(f"  {'total':<20}" + "".join(f"{v:>7}" for v in tot) + f"{sum(tot):>7}")


def main() -> int:
    problems: list[str] = []
    rows = check_answer_rows(problems)
    heldout = check_heldout(problems)

    print(f"answer_questions.jsonl: {len(rows)} rows")
    print_table("by type", rows, "type", SPLITS)
    print_table("by route", rows, "route", SPLITS)
    print_table("by kind", rows, "kind", SPLITS)
    covered = {s for r in rows for s in r["sources"]}
    total_notes = len(list(STARTER.glob("*.md")))
    print(f"\nstarter notes covered: {len(covered)} of {total_notes}")
    missing = sorted(p.stem for p in STARTER.glob("*.md") if p.stem not in covered)
    if missing:
        print("  not covered: " + ", ".join(missing))

    print(f"\nroute_questions_heldout.jsonl: {len(heldout)} rows")
    for route, n in sorted(Counter(r["route"] for r in heldout).items()):
        print(f"  {route:<12}{n:>5}")
    styles = Counter(r["style"] for r in heldout)
    print("  styles: " + ", ".join(f"{s} {n}" for s, n in sorted(styles.items())))

    if problems:
        print(f"\n{len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print("\nOK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
