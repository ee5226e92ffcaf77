"""Where `ask` spends its time on the CPU, per stage: route, retrieve, reader (evidence), generation, check.

Before = everything in fp32 (what ran until issue 13); after = compute_dtype "auto" (bf16 on a CPU with bf16
matrix instructions: index/compute.py). Both answer the same 20 questions (every n-th of
benchmarks/data/route_questions.jsonl) over the starter notes, interleaved question by question so that
a busy neighbour slows both alike, --repeats times. The default `ask` does not run the model (generate =
auto with the bare packaged model: README); --generate N also times the model stage on the first N
questions with the transformers backend in each variant's dtype and a short budget (--max-new-tokens).
Prints p50/p95 per stage and the after/before ratio of the medians; writes results/ask_stages.json.

    .venv/bin/python benchmarks/ask_stages.py                  # ~3 min on 2 cores
    .venv/bin/python benchmarks/ask_stages.py --generate 5     # plus the model, ~10 min
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import OtherLoad, machine, machine_line, read_jsonl, save, summary, table, warn_if_busy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--questions", type=int, default=20)
parser.add_argument("--repeats", type=int, default=2)
parser.add_argument("--generate", type=int, default=0, help="also time generation on the first N questions")
parser.add_argument("--max-new-tokens", type=int, default=48, help="per generated answer (reasoning + answer)")
args = parser.parse_args()

from assistant.agent import Agent  # noqa: E402  (after argparse: --help stays fast)
from assistant.backends import GenerationSettings, load_backend  # noqa: E402
from index import KnowledgeBase  # noqa: E402
from index.compute import bf16_matmul_flags, cpu_flags  # noqa: E402
from index.embed import Embedder  # noqa: E402

HERE = Path(__file__).parent
VARIANTS = {"before (fp32)": "float32", "after (auto)": "auto"}
STAGES = ["route_s", "retrieve_s", "evidence_s", "generate_s", "check_s", "total_s"]

info = {**machine(), "cpu_bf16_matmul_flags": bf16_matmul_flags(cpu_flags())}
print(machine_line(info))
warn_if_busy(info)
rows = read_jsonl(HERE / "data" / "route_questions.jsonl")
questions = [r["question"] for r in rows[:: max(1, len(rows) // args.questions)][: args.questions]]
home = Path(tempfile.mkdtemp(prefix="medassist-ask-stages-"))
KnowledgeBase(home).ensure_starter()
settings = GenerationSettings(max_new_tokens=args.max_new_tokens, max_think_tokens=args.max_new_tokens // 2)

agents, computes = {}, {}
for name, dtype in VARIANTS.items():
    kb = KnowledgeBase(home, embedder=Embedder(compute_dtype=dtype))
    computes[name] = kb.embedder.compute.__dict__
    quote_only = Agent(kb, None, generate=False)
    writer = None
    if args.generate:
        backend = load_backend("transformers", home=home, compute_dtype=dtype)
        writer = Agent(kb, lambda backend=backend: backend, settings=settings, generate=True)
        writer.router, writer.checker, writer.reader = quote_only.router, quote_only.checker, quote_only.reader
    agents[name] = (quote_only, writer)
    quote_only.ask("warm-up: what is sepsis?")
    if writer:
        writer.ask("warm-up: what is sepsis?")

timings = {name: {stage: [] for stage in STAGES} for name in VARIANTS}
other = []
for repeat in range(args.repeats):
    with OtherLoad() as load:
        for number, question in enumerate(questions):
            for name, (quote_only, writer) in agents.items():
                agent = writer if writer is not None and number < args.generate else quote_only
                answer = agent.ask(question)
                for stage in STAGES:
                    if stage in answer.timings:
                        timings[name][stage].append(answer.timings[stage])
    other.append(round(load.share, 3))
    print(f"  pass {repeat + 1}/{args.repeats} done (other processes: {load.share:.0%} of the CPUs)", flush=True)

results = {name: {stage: summary(values) for stage, values in stages.items() if values}
           for name, stages in timings.items()}
before, after = list(VARIANTS)
print(f"\n`ask` per stage, {len(questions)} questions x {args.repeats} passes, interleaved; seconds, p50 (p95)"
      + (f"; generation on the first {args.generate} questions, {args.max_new_tokens} new tokens" if args.generate else ""))
print(machine_line(info))
print({name: c["why"] for name, c in computes.items()})
print(table(["stage", *VARIANTS, "after/before (p50)"],
            [[stage, *(f"{results[n][stage]['median']:.3f} ({results[n][stage]['p95']:.3f})" for n in VARIANTS),
              f"{results[after][stage]['median'] / max(results[before][stage]['median'], 1e-9):.2f}"]
             for stage in STAGES if stage in results[before] and stage in results[after]]))
print("other processes' CPU share per pass: " + ", ".join(f"{x:.0%}" for x in other))
save("ask_stages", {"machine": info, "args": vars(args), "questions": questions, "compute": computes,
                    "stages_s": results, "other_cpu_per_pass": other})
