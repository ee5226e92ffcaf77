"""`POST /v1/chat/completions` and `GET /v1/models` in the OpenAI API's shape, so chat clients (Open WebUI, the `llm`
CLI, the `openai` package) can use medassist as a model with citations.

The question is the last user message (earlier turns are not searched: each answer stands on its own sources).
The reply's text is what the terminal shows: the emergency notice when there is one, the answer with its [n]
markers, a numbered sources list and the disclaimer; the whole `Answer` rides along as `medassist`. Streamed,
the model's reasoning comes as `reasoning_content` deltas while it writes (the field DeepSeek's API and Open
WebUI use), and the text once it is checked: a streamed draft could not be taken back if it failed the check.
"""

from __future__ import annotations

import json
import time
import uuid

from fastapi import HTTPException
from fastapi.responses import StreamingResponse

from assistant.server.streaming import answer_events
from assistant.server.schemas import MAX_QUESTION_CHARS, ChatRequest
from corpus.loaders import clean_text

MODEL_ID = "medassist"


def register(app, service, guarded) -> None:
    @app.get("/v1/models", dependencies=guarded, tags=["openai"])
    def models() -> dict:
        """The one model this server answers as."""
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "medassist"}]}

    @app.post("/v1/chat/completions", dependencies=guarded, tags=["openai"])
    def chat_completions(request: ChatRequest):
        """An OpenAI chat completion whose text is the cited answer to the last user message."""
        question = _question(request)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not request.stream:
            answer = service.agent.ask(question).as_dict()
            message = {"role": "assistant", "content": reply_text(answer)}
            if answer["reasoning"]:
                message["reasoning_content"] = answer["reasoning"]
            return {"id": completion_id, "object": "chat.completion", "created": created, "model": MODEL_ID,
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                    "medassist": answer}

        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        async def chunks():
            yield chunk({"role": "assistant", "content": ""})
            async for name, data in answer_events(service.agent, question, {}):
                if name == "reasoning":
                    yield chunk({"reasoning_content": data["text"]})
                elif name == "final":
                    yield chunk({"content": reply_text(data)})
                    yield chunk({}, "stop", medassist=data)
                elif name == "error":
                    yield f"data: {json.dumps({'error': data}, ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _question(request: ChatRequest) -> str:
    users = [m for m in request.messages if m.role == "user"]
    question = clean_text(users[-1].text()).strip() if users else ""
    if not question:
        raise HTTPException(422, "messages: the last user message holds no text to answer")
    if len(question) > MAX_QUESTION_CHARS:
        raise HTTPException(422, f"messages: the last user message is {len(question):,} characters; "
                                 f"a question holds at most {MAX_QUESTION_CHARS:,}")
    return question


def reply_text(answer: dict) -> str:
    """The answer as a chat client shows it: notice, answer with [n] markers, numbered sources, disclaimer."""
    safety = answer.get("safety") or {}
    parts = [f"**{safety['emergency_notice']}**"] if safety.get("emergency_notice") else []
    parts.append(answer["answer"])
    if answer["citations"]:
        lines = []
        for c in answer["citations"]:
            where = " > ".join(x for x in (c["section"], f"page {c['page']}" if c["page"] else "") if x)
            lines.append(f"[{c['n']}] {c['title']}" + (f" — {where}" if where else "") + f" ({c['source']})")
        parts.append("Sources:\n" + "\n".join(lines))
    if safety.get("disclaimer"):
        parts.append(f"_{safety['disclaimer']}_")
    return "\n\n".join(parts)
