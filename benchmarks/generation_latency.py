"""CPU latency of `ask` with the default model on each backend: load, time to first token, tokens/s, end to end.

Backends: transformers (in process, the default), llamacpp (in process) and openai (llama-cpp-python's
server on loopback serving the same GGUF). Each loads the packaged Gemma-3-270M: `load` is timed over
--loads fresh loads (for openai: server start until it answers, plus the client). Then every backend
answers the same questions (every n-th of benchmarks/data/route_questions.jsonl) --repeats times through
the real Agent over the starter notes, greedy, with the default token budgets. Per generate() call:
time to first token (prompt processing + first step) and decode rate (tokens after the first / time
after the first); tokens are counted with the one Gemma tokenizer for every backend. Per ask: wall
time, retrieval and checks included. Before each pass the script waits for the machine to be quiet.

    .venv/bin/python benchmarks/generation_latency.py                    # ~15 min on 2 cores
    .venv/bin/python benchmarks/generation_latency.py --questions 3 --repeats 1 --loads 1
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import OtherLoad, free_port, machine, machine_line, read_jsonl, save, summary, table, wait_for_quiet, warn_if_busy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--backends", nargs="+", default=["transformers", "llamacpp", "openai"])
parser.add_argument("--questions", type=int, default=10)
parser.add_argument("--repeats", type=int, default=3, help="passes over the questions per backend")
parser.add_argument("--loads", type=int, default=3, help="fresh model loads timed per backend")
parser.add_argument("--max-wait", type=float, default=300, help="seconds to wait for a quiet machine per pass")
args = parser.parse_args()

from assistant.agent import Agent  # noqa: E402  (after argparse: --help stays fast)
from assistant.backends import load_backend  # noqa: E402
from assistant.backends.gguf_convert import packaged_gguf  # noqa: E402
from assistant.backends.transformers_backend import resolve_model  # noqa: E402
from index import KnowledgeBase  # noqa: E402

HERE = Path(__file__).parent


class Timed:
    """Wraps a backend to time each generate() call: first piece, and the decode rate after it."""

    def __init__(self, backend, count_tokens):
        self.inner, self.count_tokens = backend, count_tokens
        self.name, self.model_name, self.eos_token = backend.name, backend.model_name, backend.eos_token
        self.first_token_s: list[float] = []
        self.decode_tok_s: list[float] = []

    def generate(self, prompt, settings, stop=None, cancel=None):
        start, first, text = time.perf_counter(), None, ""
        for piece in self.inner.generate(prompt, settings, stop=stop, cancel=cancel):
            first = first or time.perf_counter()
            text += piece
            yield piece
        if first is not None:
            self.first_token_s.append(first - start)
            tokens, after = self.count_tokens(text), time.perf_counter() - first
            if tokens > 1 and after > 0:
                self.decode_tok_s.append((tokens - 1) / after)


def start_server(gguf: Path):
    """llama-cpp-python's OpenAI-compatible server on loopback; returns (process, base URL) once it answers."""
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "4096"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    while True:
        try:
            httpx.get(f"{url}/models", timeout=1).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise SystemExit("llama_cpp.server exited; is the llamacpp extra installed?")
            time.sleep(0.1)


def load(name: str, home: Path, gguf: Path):
    """A loaded backend, the seconds it took, and the server process to stop (openai only)."""
    start = time.perf_counter()
    if name == "openai":
        proc, url = start_server(gguf)
        return load_backend("openai", base_url=url), time.perf_counter() - start, proc
    return load_backend(name, home=home), time.perf_counter() - start, None


def main() -> None:
    info = machine()
    print(machine_line(info))
    warn_if_busy(info)
    home = Path(tempfile.mkdtemp(prefix="medassist-latency-"))
    kb = KnowledgeBase(home)
    kb.ensure_starter()
    gguf = packaged_gguf(home)
    resolve_model(None, home)  # the one-off GGUF conversion is not part of a load
    from transformers import AutoTokenizer

    gemma_tokenizer = AutoTokenizer.from_pretrained(home / "models" / "gemma-3-270m")

    def count_tokens(text: str) -> int:
        return len(gemma_tokenizer(text, add_special_tokens=False)["input_ids"])

    rows = read_jsonl(HERE / "data" / "route_questions.jsonl")
    questions = [r["question"] for r in rows[:: max(1, len(rows) // args.questions)][: args.questions]]
    results = {}
    for name in args.backends:
        load_s = []
        for _ in range(args.loads):
            wait_for_quiet(args.max_wait)
            backend, seconds, proc = load(name, home, gguf)
            load_s.append(seconds)
            if proc and len(load_s) < args.loads:
                proc.terminate()
                proc.wait()
            elif len(load_s) < args.loads:
                del backend
        print(f"{name}: load {summary(load_s)['median']:.2f} s (median of {len(load_s)})", flush=True)
        timed = Timed(backend, count_tokens)
        agent = Agent(kb, lambda timed=timed: timed)
        totals, modes, other_cpu = [], [], []
        agent.ask("warm-up: what is sepsis?")
        timed.first_token_s.clear()
        timed.decode_tok_s.clear()
        for repeat in range(args.repeats):
            wait_for_quiet(args.max_wait)
            with OtherLoad() as other:
                for question in questions:
                    answer = agent.ask(question)
                    totals.append(answer.timings["total_s"])
                    modes.append(answer.mode)
            other_cpu.append(round(other.share, 3))
            print(f"  pass {repeat + 1}/{args.repeats}: ask p50 {summary(totals[-len(questions):])['median']:.1f} s "
                  f"(other processes: {other.share:.0%} of the CPUs)", flush=True)
        if proc:
            proc.terminate()
            proc.wait()
        results[name] = {"model": backend.model_name, "load_s": summary(load_s),
                         "first_token_s": summary(timed.first_token_s), "decode_tok_s": summary(timed.decode_tok_s),
                         "ask_s": summary(totals), "modes": {m: modes.count(m) for m in set(modes)},
                         "other_cpu_per_pass": other_cpu}

    print(f"\n{machine_line(info)}\n{len(questions)} questions x {args.repeats} passes per backend; "
          f"generate() calls per ask: 2 (reasoning, then answer)")
    print(table(["backend", "load s p50", "first token s p50 (p95)", "decode tok/s p50 (p5)", "ask s p50 (p95)",
                 "answer modes", "other CPU per pass"],
                [[name, f"{r['load_s']['median']:.2f}",
                  f"{r['first_token_s']['median']:.2f} ({r['first_token_s']['p95']:.2f})",
                  f"{r['decode_tok_s']['median']:.1f} ({r['decode_tok_s']['p5']:.1f})",
                  f"{r['ask_s']['median']:.1f} ({r['ask_s']['p95']:.1f})", r["modes"],
                  ", ".join(f"{x:.0%}" for x in r["other_cpu_per_pass"])] for name, r in results.items()]))
    save("generation_latency", {"machine": info, "args": vars(args), "questions": questions, "backends": results})


if __name__ == "__main__":
    main()
