"""A SIGKILL in the middle of an ingest leaves every document fully indexed or absent, in all three stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from conftest import write_note

INGEST_SCRIPT = textwrap.dedent("""
    import sys
    from index import KnowledgeBase
    kb = KnowledgeBase(sys.argv[1])
    kb.ingest(sys.argv[2:], on_progress=lambda p: print(p.chunks_done, p.chunks_total, flush=True))
""")


def big_note(folder):
    # About 700 chunks: several embedding batches, so the kill lands between Chroma writes.
    sections = {f"Topic {i}": " ".join(f"Sentence {j} of topic {i} discusses renal dosing of drug {i * 7 + j}."
                                       for j in range(60)) for i in range(100)}
    return write_note(folder, "big.md", "Big reference", "medication", sections)


def test_sigkill_mid_ingest_leaves_stores_consistent_and_rerun_completes(make_kb, notes, tmp_path):
    home = tmp_path / "kb"
    kb = make_kb(home)
    kb.ingest([notes["gout"]])
    big = big_note(tmp_path / "big")

    proc = subprocess.Popen([sys.executable, "-c", INGEST_SCRIPT, str(home), str(notes["lithium"]), str(big)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    deadline = time.monotonic() + 120
    seen_big_batch = False
    for line in proc.stdout:  # wait until part of the big document is in Chroma
        done, total = map(int, line.split())
        if total > 300 and done >= 256:
            seen_big_batch = True
            break
        assert time.monotonic() < deadline, "ingest made no progress"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert seen_big_batch

    after_crash = make_kb(home)
    check = after_crash.verify()  # opening recovers: the half-written document is undone
    assert check["consistent"], check
    titles = {d.title for d in after_crash.documents()}
    assert titles == {"Gout flare", "Lithium monitoring"}  # the finished one stays, the killed one is absent
    assert after_crash.manifest.documents("pending") == []

    (result,) = after_crash.ingest([big])
    assert result.status == "added" and result.chunks > 300
    final = after_crash.verify()
    assert final["consistent"] and final["manifest"] == check["manifest"] + result.chunks
