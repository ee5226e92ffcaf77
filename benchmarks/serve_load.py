"""`medassist serve` under load (issue 15): concurrent clients on loopback searching and asking, with the model on
llama.cpp's server, while documents are uploaded; then schemathesis against the OpenAPI schema.

Setup (in a temporary folder): a home with the starter notes; llama.cpp's OpenAI-compatible server serving the
packaged Gemma-3-270M GGUF; `medassist serve --workers W` in front with `--generate always` (the model writes
after the quotes; `max_new_tokens` kept short, so an ask is a bounded piece of work) and an API key.
For each client count (8 and 32 by default) every client loops for --seconds over: --searches-per-ask
searches (`GET /v1/search`, hybrid, k=5) then one ask (`POST /v1/ask`, streamed as a chat client asks: the
seconds to the evidence event and to the final, checked answer), each question from the answer-quality question
set. A third of the way in, --notes made-up drug notes are uploaded one by one (`POST /v1/ingest`). At the end,
an ask still waiting for the model is dropped (closing its stream stops its generation) and counted apart.
Reported per client count: searches/s, asks/s, p50/p95/max latency per kind, errors (target 0); and
that nothing uploaded was lost: each note 'added', in the top 5 of its own search afterwards on every worker, listed in
/v1/sources, and the three stores consistent (`KnowledgeBase.verify` once the server stops).
Last, schemathesis (coverage and fuzzing phases) runs against /openapi.json on the same home with the
`not_a_server_error` check: target 0 server errors. That server runs without the model (the schema is the same,
and a fuzzer's thousands of asks would otherwise each wait for generation).

    .venv/bin/python benchmarks/serve_load.py                       # ~12 min on 2 shared cores
    .venv/bin/python benchmarks/serve_load.py --clients 8 --seconds 20 --examples 10 --out /tmp/s.json  # a quick look
    .venv/bin/python benchmarks/serve_load.py --generate never --examples 0 --out benchmarks/results/serve_load_evidence.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--clients", type=int, nargs="+", default=[8, 32], help="concurrent clients, one run each")
parser.add_argument("--seconds", type=float, default=60, help="how long each run's clients loop")
parser.add_argument("--workers", type=int, default=2, help="medassist serve worker processes")
parser.add_argument("--searches-per-ask", type=int, default=3)
parser.add_argument("--notes", type=int, default=6, help="notes uploaded during each run")
parser.add_argument("--max-new-tokens", type=int, default=32, help="the model's tokens per ask (reasoning + answer)")
parser.add_argument("--examples", type=int, default=25, help="schemathesis examples per operation (0: no run)")
parser.add_argument("--generate", choices=["always", "never"], default="always",
                    help="never: the evidence reader answers alone, to see the server without the model's queue")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", type=Path, help="write the JSON here instead of benchmarks/results/serve_load.json")
args = parser.parse_args()

import httpx  # noqa: E402  (after argparse: --help stays fast)
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS, free_port, machine, machine_line  # noqa: E402

BIN = Path(sys.executable).parent
QUESTIONS = Path(__file__).parent / "data" / "answer_questions.jsonl"


def wait_until_up(url: str, proc, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited with code {proc.returncode}")
        try:
            httpx.get(url, timeout=5)
            return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit(f"{url}: no answer after {timeout:.0f} s")


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.array(values)
    return {"n": len(values), "p50_s": round(float(np.percentile(a, 50)), 3),
            "p95_s": round(float(np.percentile(a, 95)), 3), "max_s": round(float(a.max()), 3)}


SYLLABLES = ["vel", "quor", "zan", "trel", "mop", "dax", "fen", "lur", "bis", "kor", "nal", "pex"]


def drug_name(run: int, n: int) -> str:
    """A made-up drug name of its own per note (a shared stem and a number would let the notes outrank each other
    in a search for one of them), and found in no starter note."""
    return f"{SYLLABLES[run % len(SYLLABLES)]}{SYLLABLES[(n * 5) % len(SYLLABLES)]}ovir".capitalize()


def note(n: int, run: int) -> tuple[str, bytes]:
    """A made-up drug's note: its name appears nowhere else, so its own search must find it."""
    name = drug_name(run, n)
    text = (f"---\ntitle: {name}\nroute: medication\n---\n\n# {name}\n\n## Dose\n\n"
            f"{name} is given as {5 * n} mg once daily for chronic zembrosis, halved when eGFR is below 30.\n")
    return f"{name.lower()}.md", text.encode()


def start_servers(work: Path):
    """llama.cpp's server on the packaged GGUF, and medassist serve in front of it (the home's starter notes are
    indexed by its first start)."""
    from assistant.backends.gguf_convert import packaged_gguf

    home = work / "home"
    home.mkdir()
    gguf = packaged_gguf(work / "gguf")
    llama_port, port = free_port(), free_port()
    llama = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias",
                              "gemma-3-270m", "--host", "127.0.0.1", "--port", str(llama_port), "--n_ctx", "4096"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_up(f"http://127.0.0.1:{llama_port}/v1/models", llama)
    (home / "config.toml").write_text(f'backend = "openai"\nbase_url = "http://127.0.0.1:{llama_port}/v1"\n'
                                      f'generate = "{args.generate}"\nmax_new_tokens = {args.max_new_tokens}\n'
                                      f'max_think_tokens = {args.max_new_tokens // 2}\n')
    key = subprocess.run([BIN / "medassist", "--home", str(home), "serve", "keys", "add", "benchmark"],
                         capture_output=True, text=True, check=True).stdout.strip()
    serve = subprocess.Popen([BIN / "medassist", "--home", str(home), "serve", "--port", str(port),
                              "--workers", str(args.workers)], stdout=open(work / "serve.log", "w"),
                             stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/healthz", serve, timeout=900)
    workers = set()
    while len(workers) < args.workers:  # every worker has built its app (each loads the embedder)
        with httpx.Client(timeout=300) as client:
            workers.add(client.get(f"{url}/healthz").json()["worker"])
    return home, url, key, llama, serve


def ask_streamed(client, question: str, stop: threading.Event, start: float, open_streams: set,
                 times: dict) -> str | None:
    """One ask as a chat client makes it (server-sent events): seconds to the evidence and to the final answer,
    into `times` (kept when the stream is cut); the problem, if any. At the end of the run an unfinished ask is
    dropped: the main thread closes its stream (see run_load)."""
    event = None
    with client.stream("POST", "/v1/ask", json={"question": question, "stream": True}) as response:
        open_streams.add(response)
        if response.status_code != 200:
            return f"ask HTTP {response.status_code}: {response.read()[:200]!r}"
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: "):]
                if event in ("evidence", "final") and event not in times:
                    times[event] = time.perf_counter() - start
                if event == "error":
                    return "ask: error event"
            if stop.is_set() and "final" not in times:
                return None
    return None if "final" in times else "ask: the stream ended without a final answer"


def run_load(url: str, key: str, clients: int, run: int, questions: list[str]) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    kinds = ("search", "ask_evidence", "ask_final")
    timings: dict[str, list[float]] = {kind: [] for kind in kinds} | {f"{k}_during_ingest": [] for k in kinds}
    errors: list[str] = []
    cut_short = [0]
    stop, ingesting = threading.Event(), threading.Event()
    lock, open_streams = threading.Lock(), set()

    def record(kind: str, elapsed: float, during: bool) -> None:
        timings[kind].append(elapsed)
        if during:
            timings[f"{kind}_during_ingest"].append(elapsed)

    def client_loop(number: int) -> None:
        rng = random.Random(args.seed * 1000 + number)
        with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
            while not stop.is_set():
                for step in range(args.searches_per_ask + 1):
                    question, during, start = rng.choice(questions), ingesting.is_set(), time.perf_counter()
                    times, found, problem = {}, {}, None
                    try:
                        if step < args.searches_per_ask:
                            response = client.get("/v1/search", params={"q": question, "k": 5})
                            if response.status_code != 200:
                                problem = f"search HTTP {response.status_code}: {response.text[:200]}"
                            times = {"search": time.perf_counter() - start}
                        else:
                            problem = ask_streamed(client, question, stop, start, open_streams, found)
                            if not problem and "final" not in found:
                                with lock:
                                    cut_short[0] += 1
                    except Exception as exc:  # noqa: BLE001  (after the end: a stream the main thread closed)
                        problem = None if stop.is_set() else f"{type(exc).__name__}: {exc}"
                        if stop.is_set():
                            with lock:
                                cut_short[0] += 1
                    times.update({f"ask_{name}": seconds for name, seconds in found.items()})
                    with lock:
                        if problem:
                            errors.append(problem)
                        for kind, elapsed in times.items():
                            record(kind, elapsed, during)
                    if stop.is_set():
                        return

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(args.seconds / 3)
    uploads, ingest_s = [], []
    ingesting.set()
    with httpx.Client(base_url=url, headers=headers, timeout=600) as writer:
        for n in range(1, args.notes + 1):
            t = time.perf_counter()
            report = writer.post("/v1/ingest", files=[("files", note(n, run))]).json()
            ingest_s.append(time.perf_counter() - t)
            uploads.append(report["results"][0]["status"])
    ingesting.clear()
    remaining = args.seconds - (time.perf_counter() - started)
    if remaining > 0:
        time.sleep(remaining)
    stop.set()
    wall = time.perf_counter() - started
    # An ask waiting for the model hears nothing until its turn comes: close what is still open, as a user who
    # gives up would (the server sees the connection go and stops that answer).
    for response in list(open_streams):
        try:
            response.close()
        except Exception:  # noqa: BLE001  (closing from another thread may race the reader's own close)
            pass
    for thread in threads:
        thread.join()
    finished = len(timings["search"]) + len(timings["ask_final"])
    return {"clients": clients, "wall_s": round(wall, 1), "searches": len(timings["search"]),
            "asks_answered": len(timings["ask_final"]), "asks_cut_short_at_the_end": cut_short[0],
            "errors": len(errors), "error_samples": errors[:5], "requests_per_s": round(finished / wall, 2),
            "searches_per_s": round(len(timings["search"]) / wall, 2),
            "asks_per_s": round(len(timings["ask_final"]) / wall, 3),
            "latency": {kind: percentiles(values) for kind, values in timings.items()},
            "uploads": uploads, "ingest_s": percentiles(ingest_s),
            "loadavg_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}}


def check_nothing_lost(url: str, key: str, runs: list[int]) -> dict:
    """Every uploaded note is listed and found by its own search, through fresh connections (so every worker)."""
    headers = {"Authorization": f"Bearer {key}"}
    names = {drug_name(run, n) for run in runs for n in range(1, args.notes + 1)}
    listed = {d["title"] for d in httpx.get(f"{url}/v1/sources", headers=headers).json()}
    missing_by_worker: dict[int, set[str]] = {}
    for _ in range(6 * args.workers):
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            worker = client.get("/healthz").json()["worker"]
            missed = missing_by_worker.setdefault(worker, set())
            for name in sorted(names):
                hits = client.get("/v1/search", params={"q": f"{name} dose zembrosis", "k": 5}).json()
                if name not in {h["title"] for h in hits}:
                    missed.add(name)
    return {"uploaded": len(names), "not_listed": sorted(names - listed),
            "not_found_by_worker": {str(w): sorted(m) for w, m in missing_by_worker.items()},
            "workers_checked": len(missing_by_worker)}


def run_schemathesis(home: Path, work: Path, key: str) -> dict:
    port = free_port()
    serve = subprocess.Popen([BIN / "medassist", "--home", str(home), "serve", "--port", str(port), "--generate",
                              "never"], stdout=open(work / "serve-schemathesis.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/healthz", serve, timeout=900)
        start = time.perf_counter()
        result = subprocess.run([BIN / "schemathesis", "run", f"{url}/openapi.json", "--checks", "not_a_server_error",
                                 "-H", f"Authorization: Bearer {key}", "--max-examples", str(args.examples),
                                 "--seed", str(args.seed), "--request-timeout", "120"],
                                capture_output=True, text=True)
        seconds = time.perf_counter() - start
    finally:
        serve.terminate()
        serve.wait(timeout=60)
    text = result.stdout
    cases = re.search(r"(\d+) generated, (\d+) passed(?:, (\d+) failed)?", text)
    log = (work / "serve-schemathesis.log").read_text()
    return {"exit_code": result.returncode, "seconds": round(seconds, 1), "examples_per_operation": args.examples,
            "operations": re.search(r"Tested: (\d+)", text).group(1) if "Tested:" in text else None,
            "cases_generated": int(cases.group(1)) if cases else None,
            "cases_passed": int(cases.group(2)) if cases else None,
            "server_errors": len(re.findall(r"Server error", text)),
            "tracebacks_in_server_log": log.count("Traceback"), "summary": text[-1500:]}


def main() -> None:
    info = machine()
    print(machine_line(info))
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines() if line.strip()]
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    t = time.perf_counter()
    home, url, key, llama, serve = start_servers(work)
    print(f"servers up in {time.perf_counter() - t:.0f} s ({args.workers} workers, llama.cpp server, {work})")
    results = []
    try:
        for run, clients in enumerate(args.clients, start=1):
            result = run_load(url, key, clients, run, questions)
            results.append(result)
            lat = result["latency"]
            print(f"{clients:>3} clients: {result['searches_per_s']:.2f} searches/s, {result['asks_per_s']:.3f} asks/s "
                  f"({result['asks_cut_short_at_the_end']} cut short at the end); p50/p95 s: search "
                  f"{lat['search'].get('p50_s')}/{lat['search'].get('p95_s')}, ask evidence "
                  f"{lat['ask_evidence'].get('p50_s')}/{lat['ask_evidence'].get('p95_s')}, ask final "
                  f"{lat['ask_final'].get('p50_s')}/{lat['ask_final'].get('p95_s')}; errors {result['errors']}; "
                  f"uploads {result['uploads']}; load {result['loadavg_1m']}")
        lost = check_nothing_lost(url, key, list(range(1, len(args.clients) + 1)))
    finally:
        serve.terminate()
        serve.wait(timeout=120)
        llama.terminate()
        llama.wait(timeout=60)
    from index import KnowledgeBase

    lost["stores_consistent"] = KnowledgeBase(home).verify()["consistent"]
    print(f"nothing lost: {lost}")
    fuzz = run_schemathesis(home, work, key) if args.examples else {}
    if fuzz:
        print(f"schemathesis: {fuzz['cases_generated']} cases over {fuzz['operations']} operations, "
              f"{fuzz['server_errors']} server errors, exit code {fuzz['exit_code']}, "
              f"{fuzz['tracebacks_in_server_log']} tracebacks in the server log ({fuzz['seconds']} s)")
    out = args.out or RESULTS / "serve_load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "settings": vars(args) | {"out": str(out)}, "runs": results,
                               "nothing_lost": lost, "schemathesis": fuzz}, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
