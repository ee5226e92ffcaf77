"""An answer as a stream of events, for `/v1/ask` (server-sent events) and `/v1/chat/completions` (chunks)."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid

from assistant.agent import Agent, Answer
from assistant.errors import describe, expected
from assistant.safety import QuestionError

log = logging.getLogger("medassist.serve")


async def answer_events(agent: Agent, question: str, options: dict):
    """The agent's answer as (event, data) pairs: route, sources, evidence (the quoted answer), reasoning and
    answer pieces as the model writes, then final (the checked Answer) or error. It runs in a thread; a client that goes away cancels it (the
    `finally` runs when the response is cancelled), which stops the model mid-answer."""
    loop, events, cancel = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()

    def put(event: str, data) -> None:
        loop.call_soon_threadsafe(events.put_nowait, (event, data))

    def on_evidence(evidence: Answer) -> None:
        shown = evidence.as_dict()
        put("route", {"route": shown["route"], "confidence": shown["route_confidence"]})
        put("sources", shown["citations"])
        put("evidence", shown)

    def run() -> None:
        try:
            answer = agent.ask(question, on_text=lambda phase, piece: put(phase, {"text": piece}),
                               on_evidence=on_evidence, cancel=cancel, **options)
            put("final", answer.as_dict())
        except Exception as exc:
            put("error", error_detail(exc))
        finally:
            put("", None)

    threading.Thread(target=run, name="answer", daemon=True).start()
    routed = False
    try:
        while True:
            event, data = await events.get()
            if not event:
                return
            if event == "final" and not routed:  # no evidence was read (abstained, model only): route first
                yield "route", {"route": data["route"], "confidence": data["route_confidence"]}
            routed = routed or event in ("route", "final")
            yield event, data
    finally:
        cancel.set()


def error_detail(exc: Exception) -> dict:
    """What a client may see of an exception: an expected one's one line, otherwise an id to find it in the log."""
    if isinstance(exc, QuestionError):  # the agent's own check of a question (HTTP 422)
        return {"message": str(exc), "type": "invalid_request_error"}
    if expected(exc):
        log.warning("request failed: %s", describe(exc))
        return {"message": describe(exc), "type": "service_unavailable"}
    reference = uuid.uuid4().hex[:12]
    log.error("error %s", reference, exc_info=exc)  # the traceback stays in the server's log
    return {"message": f"internal server error (logged on the server as {reference})", "type": "server_error"}
