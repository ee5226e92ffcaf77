"""`medassist serve --workers 2` (two processes on one home) stays correct while one of them ingests: every
request answers, the upload is reported per file, and then every worker finds the new document; a removal
through one worker is seen by the other."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port, wait_for_port
from live_server import copy_home

MEDASSIST = str(Path(sys.executable).parent / "medassist")
# These tests check what the workers answer, not how fast (benchmarks/two_process.py measures that): a shared CI
# machine once took longer than httpx's default 5 s for a search right after the uploads.
TIMEOUT = 120


@pytest.fixture(scope="module")
def workers(starter_home, tmp_path_factory):
    home = copy_home(starter_home, tmp_path_factory.mktemp("workers") / "home")
    port = free_port()
    log = open(home.parent / "serve.log", "w")
    proc = subprocess.Popen([MEDASSIST, "--home", str(home), "serve", "--port", str(port), "--workers", "2"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MEDASSIST_HOME": str(home)})
    url = f"http://127.0.0.1:{port}"
    wait_for_port(port, proc, timeout=240)
    pids = _worker_pids(url, proc, log)
    yield url, home, pids
    proc.terminate()
    proc.wait(timeout=60)
    log.close()
    assert "Traceback" not in (home.parent / "serve.log").read_text()


def _worker_pids(url: str, proc, log, timeout: float = 300) -> set[int]:
    """Both workers listening and each with its app built (a fresh connection may reach either one)."""
    seen, deadline = set(), time.monotonic() + timeout
    while len(seen) < 2:
        if time.monotonic() > deadline or proc.poll() is not None:
            log.flush()
            pytest.fail(f"two workers did not answer: {seen}")
        try:
            seen.add(httpx.get(f"{url}/healthz", timeout=60).json()["worker"])
        except httpx.HTTPError:
            time.sleep(0.5)
    return seen


def _note(folder: Path, n: int) -> tuple[str, bytes]:
    text = (f"---\ntitle: Quillamine note {n}\nroute: medication\n---\n\n# Quillamine note {n}\n\n## Dose\n\n"
            f"Quillamine variant {n} is given as {10 * n} mg twice daily for tropical sprue type {n}.\n")
    return f"quillamine-{n}.md", text.encode()


def test_two_workers_answer_every_request_while_one_ingests(workers, tmp_path):
    url, home, pids = workers
    failures, answered, stop = [], [], threading.Event()

    def read_in_a_loop() -> None:
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            while not stop.is_set():
                for response in (client.get("/v1/search", params={"q": "apixaban dose renal", "k": 3}),
                                 client.post("/v1/ask", json={"question": "What is the apixaban dose in atrial "
                                                                          "fibrillation?"})):
                    (answered if response.status_code == 200 else failures).append(response.status_code)

    readers = [threading.Thread(target=read_in_a_loop) for _ in range(3)]
    for reader in readers:
        reader.start()
    time.sleep(2)  # the readers are answered while nothing is written, then while the uploads are ingested
    reports = []
    with httpx.Client(base_url=url, timeout=300) as writer:
        for n in range(1, 7):
            reports.append(writer.post("/v1/ingest", files=[("files", _note(tmp_path, n))]).json())
    stop.set()
    for reader in readers:
        reader.join(timeout=300)
    assert failures == [] and len(answered) > 6
    assert [r["results"][0]["status"] for r in reports] == ["added"] * 6

    found_by = {}
    for _ in range(40):  # a connection each time: the kernel hands each to either worker
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:  # both requests on one connection: one worker
            worker = client.get("/healthz").json()["worker"]
            hits = client.get("/v1/search", params={"q": "quillamine tropical sprue", "k": 10}).json()
        found_by.setdefault(worker, set()).update(h["title"] for h in hits if h["title"].startswith("Quillamine"))
    assert len(found_by) == 2 and all(len(titles) == 6 for titles in found_by.values()), found_by


def test_a_removal_through_one_worker_is_seen_by_the_other(workers):
    url, home, pids = workers
    documents = httpx.get(f"{url}/v1/sources", timeout=TIMEOUT).json()
    target = next(d for d in documents if d["title"] == "Warfarin")
    assert httpx.delete(f"{url}/v1/sources/{target['doc_id']}", timeout=TIMEOUT).status_code == 200
    seen = {}
    for _ in range(30):
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:  # one connection: one worker for both requests
            worker = client.get("/healthz").json()["worker"]
            titles = {h["title"] for h in client.get("/v1/search", params={"q": "warfarin INR", "k": 10}).json()}
            seen.setdefault(worker, set()).update(titles)
    assert len(seen) == 2 and all("Warfarin" not in titles for titles in seen.values())
