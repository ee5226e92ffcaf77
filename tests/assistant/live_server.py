"""A real uvicorn server on a loopback port, in a thread of the test process (so it shares the loaded embedder)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from conftest import free_port


class LiveServer:
    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def copy_home(starter_home: Path, where: Path) -> Path:
    """A writable copy of the session's indexed starter home."""
    shutil.copytree(starter_home, where)
    return where
