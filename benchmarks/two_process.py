"""Two processes on one home (issue 12): one ingests, edits and removes in a loop while another searches and asks.

The writer (this script again, with --writer, in a subprocess) cycles through --drugs made-up drug monographs
("Zelbravir monograph", ...): a drug that is absent is ingested, a present one is either edited and ingested
again (replaced: its text carries "revision N") or removed, one operation every --pause seconds. It logs each
operation's start and end on the machine's monotonic clock, which both processes share.
The reader (this process, one long-lived KnowledgeBase as a chat holds) meanwhile asks about each drug in turn:
`kb.search` (hybrid, dense and sparse in turn, k=5) and `Agent.ask` (the evidence reader, no model).

Checks, from the two logs (each must be 0):
  removed  a drug cited although its removal had finished before the search began (and it was not ingested again)
  stale    a drug's text cited at a revision older than one whose ingest had finished before the search began
  missed   a hybrid or sparse search begun after a drug's ingest finished (and before its removal began) that
           does not return it
  errors   exceptions in either process
  lost     at the end: the manifest's drugs differ from the writer's, or the three stores disagree (`verify`)
Reader wait: search latency alone (before the writer starts and after it stops: on a shared machine the
difference between the two is the noise) and with the writer, p50/p95/max; searches that reloaded after a
write are also shown apart, and the writer's operation times for scale.

    .venv/bin/python benchmarks/two_process.py                           # ~4 min on 2 cores: starter notes + 12 drugs
    .venv/bin/python benchmarks/two_process.py --base none --drugs 6 --seconds 15 --out /tmp/t.json  # the test's run
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seconds", type=float, default=120, help="how long the writer loops")
parser.add_argument("--drugs", type=int, default=12, help="made-up drug monographs the writer cycles through")
parser.add_argument("--pause", type=float, default=0.3, help="seconds between the writer's operations")
parser.add_argument("--base", choices=["starter", "none"], default="starter",
                    help="documents indexed before the run and never touched (the starter notes, or none)")
parser.add_argument("--baseline", type=int, default=60, help="searches timed before the writer starts")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", type=Path, help="write the JSON here instead of benchmarks/results/two_process.json")
parser.add_argument("--writer", nargs=2, metavar=("HOME", "NOTES"), help=argparse.SUPPRESS)  # the writer's role
args = parser.parse_args()

from index import KnowledgeBase  # noqa: E402  (after argparse: --help stays fast)

SYLLABLES = ["zel", "quin", "mora", "tav", "lor", "cres", "bal", "vend", "oxa", "pim", "sor", "tral", "nix", "dur",
             "fel", "gar"]
ENDINGS = ["bravir", "tinostat", "dolumab", "vapril", "tezolol", "fenazole", "cartide", "somycin"]


def drug_names(count: int) -> list[str]:
    """Distinct made-up names, so that a drug's question finds only its own monograph."""
    names = [f"{s}{e}" for e in ENDINGS for s in SYLLABLES]
    return random.Random(0).sample(names, count)


def write_monograph(notes: Path, name: str, revision: int) -> Path:
    path = notes / f"{name}.md"
    dose = 10 * (revision + 1)
    path.write_text(f"---\ntitle: {name.capitalize()} monograph\nroute: medication\n---\n\n"
                    f"# {name.capitalize()} monograph\n\n## Dosing\n\n{name.capitalize()} is given at {dose} mg twice "
                    f"daily (revision {revision}). Halve the {name} dose when the eGFR is below 30.\n\n"
                    f"## Monitoring\n\nCheck {name} trough levels after the fifth dose (revision {revision}).\n",
                    encoding="utf-8")
    return path


def question(name: str) -> str:
    return f"What dose of {name} is given twice daily?"


def cited(passages) -> list[tuple[str, int]]:
    """(drug, revision) of each cited monograph passage."""
    found = []
    for title, text in passages:
        if title.endswith(" monograph"):
            revision = re.search(r"revision (\d+)", text)
            found.append((title.split()[0].lower(), int(revision.group(1)) if revision else -1))
    return found


# --- the writer ---------------------------------------------------------------------------------------------
def run_writer(home: Path, notes: Path) -> None:
    kb = KnowledgeBase(home)
    rng = random.Random(args.seed + 1)
    names = sorted(p.stem for p in notes.glob("*.md"))
    present = {d.title.split()[0].lower() for d in kb.documents() if d.title.endswith(" monograph")}
    revision = {name: 0 for name in names}
    kb.embedder.embed([kb.documents()[0].title])  # loading the model and llama-index is not an operation
    from llama_index.retrievers.bm25 import BM25Retriever  # noqa: F401
    print(json.dumps({"ready": True}), flush=True)
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        name = rng.choice(names)
        op = "remove" if name in present and rng.random() < 0.5 else "ingest"
        event = {"op": op, "drug": name, "start": time.monotonic()}
        try:
            if op == "remove":
                event["removed"] = len(kb.remove(str(notes / f"{name}.md")))
                present.discard(name)
            else:
                revision[name] += 1
                (result,) = kb.ingest([write_monograph(notes, name, revision[name])])
                event.update(status=result.status, revision=revision[name])
                present.add(name)
        except Exception as exc:  # noqa: BLE001  (counted, and the loop goes on)
            event["error"] = f"{type(exc).__name__}: {exc}"
        event["end"] = time.monotonic()
        print(json.dumps(event), flush=True)
        time.sleep(args.pause)
    print(json.dumps({"present": sorted(present)}), flush=True)


# --- the reader ---------------------------------------------------------------------------------------------
def read_loop(kb, agent, names: list[str], until) -> list[dict]:
    """Search and ask about each drug in turn until `until(records)`; one record per call."""
    records, modes, turn = [], ["hybrid", "dense", "sparse"], 0
    while not until(records):
        name, round_ = names[turn % len(names)], turn // len(names)  # each drug meets every kind of call
        kind = "ask" if round_ % 4 == 3 else "search"
        mode = "hybrid" if kind == "ask" else modes[round_ % 3]
        view = kb._view
        record = {"kind": kind, "mode": mode, "drug": name, "start": time.monotonic()}
        try:
            if kind == "search":
                passages = [(p.chunk.title, p.chunk.text) for p in kb.search(question(name), k=5, mode=mode)]
            else:
                answer = agent.ask(question(name))
                passages = [(c.title, c.text) for c in answer.citations]
                record["abstained"] = answer.abstained
            record["cited"] = cited(passages)
        except Exception as exc:  # noqa: BLE001
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["end"] = time.monotonic()
        record["reloaded"] = kb._view != view  # this call caught up with a write (a fresh Chroma client)
        record["stale_view"] = kb._view != kb.manifest.generation  # the writer held the lock: old dense view
        records.append(record)
        turn += 1
    return records


def check(records: list[dict], events: list[dict]) -> dict:
    """Count the citations and misses the writer's log proves wrong (see the module docstring)."""
    by_drug: dict[str, list[dict]] = {}
    for event in events:
        if "error" not in event:
            by_drug.setdefault(event["drug"], []).append(event)
    counts = {"removed": 0, "stale": 0, "missed": 0}
    examples = []
    for record in records:
        if "cited" not in record:
            continue
        start, end = record["start"], record["end"]
        for drug, revision in set(record["cited"]):
            done = [e for e in by_drug.get(drug, []) if e["end"] < start]
            running = [e for e in by_drug.get(drug, []) if e["start"] <= end and e["end"] >= start]
            last = done[-1] if done else None
            if last and last["op"] == "remove" and not running:
                counts["removed"] += 1
                examples.append({"problem": "removed", **record})
            newest = max((e["revision"] for e in done if e["op"] == "ingest"), default=0)
            if revision < newest:
                counts["stale"] += 1
                examples.append({"problem": "stale", "newest": newest, **record})
        if record["kind"] == "search" and record["mode"] != "dense":
            events_of = by_drug.get(record["drug"], [])
            done = [e for e in events_of if e["end"] < start]
            running = [e for e in events_of if e["start"] <= end and e["end"] >= start]
            if done and done[-1]["op"] == "ingest" and not running and \
                    record["drug"] not in {drug for drug, _ in record["cited"]}:
                counts["missed"] += 1
                examples.append({"problem": "missed", **record})
    return {**counts, "examples": examples[:5]}


def main() -> None:
    from assistant.agent import Agent
    from common import machine, machine_line, save, summary, table, warn_if_busy

    info = machine()
    warn_if_busy(info)
    folder = Path(tempfile.mkdtemp(prefix="medassist-two-process-"))
    home, notes = folder / "home", folder / "notes"
    notes.mkdir()
    names = drug_names(args.drugs)
    kb = KnowledgeBase(home)
    t = time.perf_counter()
    if args.base == "starter":
        kb.ensure_starter()
    kb.ingest([write_monograph(notes, name, 0) for name in names[::2]])  # half present at the start
    for name in names[1::2]:
        write_monograph(notes, name, 0)
    print(f"index: {kb.manifest.count_ready_chunks()} chunks ({time.perf_counter() - t:.0f} s); home {home}")
    agent = Agent(kb, None)
    agent.ask(question(names[0]))  # warm-up: the router, the reader and BM25 load once
    alone = read_loop(kb, agent, names, lambda records: len(records) >= args.baseline)

    writer = subprocess.Popen([sys.executable, __file__, "--writer", str(home), str(notes), "--seconds",
                               str(args.seconds), "--pause", str(args.pause), "--seed", str(args.seed)],
                              stdout=subprocess.PIPE, text=True)
    assert json.loads(writer.stdout.readline()).get("ready"), "the writer did not start"
    started = time.monotonic()
    records = read_loop(kb, agent, names, lambda records: writer.poll() is not None)
    lines = [json.loads(line) for line in writer.stdout]
    writer.wait()
    events, present = [e for e in lines if "op" in e], next((e["present"] for e in lines if "present" in e), None)
    after = read_loop(kb, agent, names, lambda records: len(records) >= args.baseline)  # alone again: the noise

    verify = kb.verify()  # the reader catches up and compares the three stores
    indexed = sorted(d.title.split()[0].lower() for d in kb.documents() if d.title.endswith(" monograph"))
    found_after = sum(name in {d for d, _ in cited([(p.chunk.title, p.chunk.text)
                                                      for p in kb.search(question(name), k=5)])} for name in indexed)
    t = time.perf_counter()
    for _ in range(1000):
        kb.retriever  # noqa: B018  (nothing changed: what every search pays to find that out)
    check_us = (time.perf_counter() - t) * 1000
    problems = check(records, events)
    errors = [r["error"] for r in records if "error" in r] + [e["error"] for e in events if "error" in e]
    lost = (present is None or indexed != present) + (not verify["consistent"]) + (found_after != len(indexed))

    searches = [r for r in records if r["kind"] == "search"]
    ms = lambda rows: summary([r["end"] - r["start"] for r in rows], 1000)  # noqa: E731
    results = {
        "machine": info, "args": {k: v for k, v in vars(args).items() if k != "writer" and k != "out"},
        "writer_seconds": round(time.monotonic() - started, 1),
        "operations": {op: sum(e["op"] == op for e in events) for op in ("ingest", "remove")},
        "replaced": sum(e.get("status") == "replaced" for e in events),
        "reader_calls": {"search": len(searches), "ask": len(records) - len(searches)},
        "checks": {k: problems[k] for k in ("removed", "stale", "missed")} | {"errors": len(errors), "lost": lost},
        "examples": problems["examples"], "error_messages": errors[:5],
        "end_state": {"verify": verify, "drugs_indexed": len(indexed), "drugs_expected": len(present or []),
                      "found_by_search": found_after},
        "latency_ms": {
            "search alone, before the writer": ms([r for r in alone if r["kind"] == "search"]),
            "search alone, after it": ms([r for r in after if r["kind"] == "search"]),
            "search, writer running": ms(searches),
            "  of which reloaded after a write": ms([r for r in searches if r["reloaded"]]),
            "  of which served from the old dense view (writer busy)": ms([r for r in searches if r["stale_view"]]),
            "ask alone (before and after)": ms([r for r in alone + after if r["kind"] == "ask"]),
            "ask, writer running": ms([r for r in records if r["kind"] == "ask"]),
            "writer: ingest": summary([e["end"] - e["start"] for e in events if e["op"] == "ingest"], 1000),
            "writer: remove": summary([e["end"] - e["start"] for e in events if e["op"] == "remove"], 1000),
        },
        "asks_about_a_present_drug_answered": _answered(records, events),
        "freshness_check_per_search_us": round(check_us, 1),
    }
    print(f"\nTwo processes on one home: {results['writer_seconds']} s of writes ({results['operations']['ingest']} "
          f"ingests, {results['replaced']} of them replacing, {results['operations']['remove']} removals) against "
          f"{len(searches)} searches and {len(records) - len(searches)} asks")
    print(machine_line(info))
    print(table(["check", "count"], [[k, v] for k, v in results["checks"].items()]))
    answered = results["asks_about_a_present_drug_answered"]
    print(f"asks about a drug ready before the ask that cited its monograph: {answered['cited_the_monograph']}/"
          f"{answered['asked']}; searches served from the old dense view while the writer was busy: "
          f"{sum(r['stale_view'] for r in searches)}/{len(searches)}; the per-search freshness check costs "
          f"{check_us:.0f} us\n")
    print(table(["latency, ms", "n", "p50", "p95", "max"],
                [[name, s["n"], s.get("median", "-"), s.get("p95", "-"), s.get("max", "-")]
                 for name, s in results["latency_ms"].items()]))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    else:
        save("two_process", results)


def _answered(records: list[dict], events: list[dict]) -> dict:
    """Of the asks about a drug whose ingest had finished (and not been undone) before the ask began, how many
    cited its monograph; an ask served from the old dense view while the writer held the lock may abstain."""
    asked = cited_own = 0
    for record in records:
        if record["kind"] != "ask" or "cited" not in record:
            continue
        done = [e for e in events if e["drug"] == record["drug"] and e["end"] < record["start"] and "error" not in e]
        if done and done[-1]["op"] == "ingest":
            asked += 1
            cited_own += record["drug"] in {drug for drug, _ in record["cited"]}
    return {"asked": asked, "cited_the_monograph": cited_own}


if __name__ == "__main__":
    if args.writer:
        run_writer(*map(Path, args.writer))
    else:
        main()
