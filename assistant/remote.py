"""A `medassist serve` server used as the local agent and knowledge base are (`ask --server`, `chat --server`).

`RemoteAgent.ask` has `Agent.ask`'s signature and callbacks, fed by the server's event stream: the evidence
first, then the model's reasoning and answer pieces, then the checked `Answer`. `RemoteKnowledgeBase.ingest`
uploads files with `KnowledgeBase.ingest`'s signature and per-file results. The CLI and the chat use them
unchanged.
"""

from __future__ import annotations

import json
import threading
from dataclasses import fields
from pathlib import Path
from typing import Callable, Iterator

from assistant.agent import Answer, Citation, SentenceCheck
from assistant.backends.base import BackendError
from assistant.backends.openai_backend import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, server_url
from assistant.config import Secret


class RemoteModel:
    """What the chat shows of the server's model (its name and backend)."""

    def __init__(self, name: str, backend: str):
        self.model_name, self.name = name, f"{backend} via medassist serve"


class RemoteAgent:
    def __init__(self, url: str, api_key: Secret | None = None, allow_insecure_http: bool = False):
        import httpx

        base = server_url(url.rstrip("/").removesuffix("/v1"), sends_key=api_key is not None,
                          allow_insecure_http=allow_insecure_http)
        self.url = base
        headers = {"Authorization": f"Bearer {api_key.reveal()}"} if api_key else {}
        self.client = httpx.Client(base_url=base, headers=headers,
                                   timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
        health = self._json("GET", "/healthz")
        if health.get("auth") and not api_key:
            raise BackendError(f"{base} needs an API key: set server_key in config.toml or MEDASSIST_SERVER_KEY "
                               "(its admin creates one with 'medassist serve keys add NAME')")
        self.generate = bool(health.get("generates"))
        self.backend = RemoteModel(health["model"], health.get("backend") or "") if health.get("model") else None
        self.k: int | None = None  # the server's default unless set (the chat's settings set it)
        self.kb = RemoteKnowledgeBase(self)

    def ask(self, question: str, route: str | None = None, use_rag: bool = True, k: int | None = None,
            on_text: Callable[[str, str], None] | None = None, cancel: threading.Event | None = None,
            on_evidence: Callable[[Answer], None] | None = None) -> Answer:
        body = {"question": question, "route": route, "use_rag": use_rag, "k": k or self.k, "stream": True}
        evidence = None
        for event, data in self._events("/v1/ask", body):
            if cancel is not None and cancel.is_set():
                break  # leaving the stream closes the connection, which stops the server's model
            if event == "evidence":
                evidence = answer_from_dict(data)
                if on_evidence:
                    on_evidence(evidence)
            elif event in ("reasoning", "answer") and on_text:
                on_text(event, data["text"])
            elif event == "final":
                return answer_from_dict(data)
            elif event == "error":
                raise BackendError(f"{self.url}: {data.get('message', 'the answer failed')}")
        if evidence is not None:
            return evidence  # cancelled: what was shown stands
        if cancel is not None and cancel.is_set():
            return Answer(question, "general", 0.0, "", abstain_reason="cancelled")
        raise BackendError(f"{self.url} ended the answer before it was complete")

    # --- HTTP -----------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs):
        import httpx

        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise BackendError(f"cannot reach the medassist server at {self.url}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise BackendError(f"{self.url}{path} answered HTTP {response.status_code}: {_message(response.text)}")
        return response

    def _json(self, method: str, path: str, **kwargs):
        try:
            return self.request(method, path, **kwargs).json()
        except ValueError:
            raise BackendError(f"{self.url}{path} did not answer JSON: is it a medassist server?") from None

    def _events(self, path: str, body: dict) -> Iterator[tuple[str, dict]]:
        import httpx

        try:
            with self.client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    raise BackendError(f"{self.url}{path} answered HTTP {response.status_code}: "
                                       f"{_message(response.read().decode('utf-8', 'replace'))}")
                event = "message"
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[len("event:"):].strip()
                    elif line.startswith("data:"):
                        yield event, json.loads(line[len("data:"):])
        except httpx.HTTPError as exc:
            raise BackendError(f"cannot reach the medassist server at {self.url}: {type(exc).__name__}: {exc}") from None


class RemoteKnowledgeBase:
    """Ingest through the server: each file is uploaded in a request of its own (so each one reports as it
    goes, and stays under the server's size limit), found as a local ingest finds them."""

    def __init__(self, agent: RemoteAgent):
        self.agent = agent

    def ingest(self, paths, route: str | None = None, recursive: bool = False, on_result=None, on_progress=None,
               follow_links: bool = False) -> list:
        from index.knowledge_base import IngestProgress, IngestResult, find_files

        files = list(find_files(paths, recursive, follow_links))
        results = []
        for number, (path, skip) in enumerate(files):
            if skip:
                result = IngestResult(str(path), "skipped", reason=skip)
            else:
                result = self._upload(Path(path), route)
            results.append(result)
            if on_result:
                on_result(result)
            if on_progress:
                on_progress(IngestProgress(number + 1, len(files), str(path), 0, 0))
        return results

    def _upload(self, path: Path, route: str | None):
        from index.knowledge_base import IngestResult

        try:
            with open(path, "rb") as file:
                report = self.agent._json("POST", "/v1/ingest", files=[("files", (path.name, file))],
                                          data={"route": route} if route else {})
        except OSError as exc:
            return IngestResult(str(path), "failed", reason=exc.strerror or str(exc))
        except BackendError as exc:  # too large, refused: this file fails, the rest go on
            return IngestResult(str(path), "failed", reason=str(exc))
        result = report["results"][0]
        return IngestResult(**{**result, "path": str(path)})


def answer_from_dict(data: dict) -> Answer:
    """An `Answer` back from its JSON (`Answer.as_dict()`)."""
    known = {f.name for f in fields(Answer)}
    answer = Answer(**{k: v for k, v in data.items() if k in known})
    answer.citations = [Citation(**c) for c in data.get("citations") or []]
    answer.sentences = [SentenceCheck(**s) for s in data.get("sentences") or []]
    answer.generated = [SentenceCheck(**s) for s in data.get("generated") or []]
    return answer


def _message(text: str) -> str:
    """The server's error message (our JSON errors, or the first 300 characters of anything else)."""
    try:
        return json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return text[:300]
