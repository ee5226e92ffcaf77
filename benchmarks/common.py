"""What the three benchmark scripts share: where the data is, the machine, percentiles, tables, results."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

from assistant.evaluation import read_jsonl  # noqa: F401  (one JSONL reader, shared with the harness)

# The evaluation data is read in place (never copied into the repository); MEDASSIST_DATA overrides.
DATA = Path(os.environ.get("MEDASSIST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    import torch

    return {"date": datetime.now().astimezone().isoformat(timespec="seconds"),
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": sys.version.split()[0], "loadavg_1m_at_start": round(os.getloadavg()[0], 2)}


def machine_line(info: dict) -> str:
    return (f"{info['date'][:10]} | {info['platform']} | {info['cpu_count']} CPUs "
            f"(torch threads {info['torch_threads']}) | Python {info['python']} | "
            f"load avg at start {info['loadavg_1m_at_start']}")


def warn_if_busy(info: dict) -> None:
    """Timings are only meaningful on an idle machine: say so when something else is running."""
    if info["loadavg_1m_at_start"] > 0.5:
        print(f"WARNING: 1-minute load average is {info['loadavg_1m_at_start']} before the run: other processes "
              "compete for the CPUs and the timings below are inflated.")


class OtherLoad:
    """Measures the CPU that *other* processes used while the block ran, as a share of all CPUs (0..1).

    On a shared 2-core machine one busy neighbour is enough to multiply a search's p95 (torch's two
    threads wait for each other), so every timed block says how clean it was.
    """

    def __enter__(self):
        self._start = self._sample()
        return self

    def __exit__(self, *exc):
        self.share = self.between(self._start, self._sample())

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        """(busy CPU seconds of the machine, CPU seconds of this process, wall clock)."""
        import time

        import psutil

        cpu, own = psutil.cpu_times(), psutil.Process().cpu_times()
        return (sum(cpu) - cpu.idle - getattr(cpu, "iowait", 0.0), own.user + own.system, time.perf_counter())

    @staticmethod
    def between(first: tuple, second: tuple) -> float:
        (busy0, own0, t0), (busy1, own1, t1) = first, second
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / (max(t1 - t0, 1e-9) * (os.cpu_count() or 1)))


def wait_for_quiet(max_wait_s: float, threshold: float = 0.05) -> float:
    """Wait (at most `max_wait_s`) until the other processes use under `threshold` of the CPUs; the seconds waited."""
    import time

    import psutil

    waited, said = 0.0, False
    while waited < max_wait_s and psutil.cpu_percent(interval=2) / 100 >= threshold:  # we are idle meanwhile
        if not said:
            print(f"  waiting for other processes to go quiet (at most {max_wait_s:.0f} s) ...", flush=True)
            said = True
        time.sleep(3)
        waited += 5
    return waited


def summary(values, scale: float = 1.0) -> dict:
    """Median and spread of a list of numbers (times `scale`)."""
    a = np.asarray(values, dtype=float) * scale
    if a.size == 0:
        return {"n": 0}
    p = lambda q: round(float(np.percentile(a, q)), 3)  # noqa: E731
    return {"n": int(a.size), "median": p(50), "p5": p(5), "p95": p(95), "p99": p(99),
            "min": round(float(a.min()), 3), "max": round(float(a.max()), 3), "mean": round(float(a.mean()), 3)}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table (prints readably, and pastes into docs/benchmarks.md as is)."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {**payload, "loadavg_1m_at_end": round(os.getloadavg()[0], 2)}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def free_port() -> int:
    """A loopback port nobody listens on, for a server a benchmark starts."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
