"""`medassist serve`: the knowledge base and the agent of one home, over HTTP (FastAPI).

One process or several (`--workers N`, separate uvicorn processes, each with its own `KnowledgeBase` and
`Agent` on the same home). The knowledge base is already safe for that (index/knowledge_base.py: one writer at
a time through the home's `write.lock`, readers never wait and reload what another process changed), so any
worker may take an upload or a removal: they queue on that lock, and the others go on answering.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import tempfile
import threading
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from fastapi import Depends, FastAPI, File, Form, HTTPException, Path as PathParam, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from assistant.agent import Agent, Answer
from assistant.config import Config, load_config
from assistant.server import openai_compat
from assistant.server.keys import KeyStore
from assistant.server.middleware import BodyLimit, CatchAll
from assistant.server.streaming import answer_events, error_detail
from assistant.server.schemas import (AskRequest, DocumentOut, ErrorOut, Health, IngestOut, IngestResultOut,
                                      PassageOut, RemovedOut, Route)
from corpus.loaders import clean_text

JSON_LIMIT = 1 * 2**20  # bytes of a JSON request: a question and a chat history fit many times over
UPLOADS = "uploads"  # HOME/uploads/: where uploaded files are kept, since each citation points at its file
ERRORS = {code: {"model": ErrorOut} for code in (401, 404, 413, 422, 500, 503)}


class Service:
    """What a server process holds: the knowledge base, the agent, the keys; built once per process."""

    def __init__(self, config: Config, kb=None, public: bool = False):
        self.config = config
        self.public = public  # bound to an address other machines reach: a key is always required
        self.keys = KeyStore(config.home)
        self.kb = kb or config.knowledge_base()
        self.kb.ensure_starter()
        generates = config.generates() or not config.use_rag
        backend = config.backend_factory()() if generates else None
        if backend is not None and backend.name != "openai":
            backend = _OneAtATime(backend)  # an in-process model is not made for two generations at once
        self.backend = backend
        self.agent = Agent(self.kb, (lambda: backend) if backend else None, k=config.k,
                           settings=config.generation_settings(), generate=config.generates())
        self.upload_dir = config.home / UPLOADS

    def auth_required(self) -> bool:
        """Keys are required off loopback, and on loopback too once one was ever added (a proxy in front of a
        loopback server makes it public; revoking the last key must not open it)."""
        return self.public or bool(self.keys.records())

    @contextmanager
    def writing(self):
        """Across workers, one upload at a time (saving a file then ingesting it must not interleave with another
        upload of the same name); the knowledge base's own lock orders it with every other write."""
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        with open(self.upload_dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class _OneAtATime:
    """A backend whose generations run one at a time (the server answers many requests in threads)."""

    def __init__(self, backend):
        self._backend, self._lock = backend, threading.Lock()
        self.name, self.model_name = backend.name, backend.model_name

    def generate(self, *args, **kwargs):
        with self._lock:
            yield from self._backend.generate(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._backend, name)


def create_app(config: Config, kb=None, public: bool = False) -> FastAPI:
    """The app over `config.home`; `kb` lets tests share a loaded embedder; `public`: bound off loopback."""
    service = Service(config, kb, public)
    app = FastAPI(title="medassist", version=version("medassist"),
                  description="Cited, checked answers from one team's medical references. Decision support for "
                              "professionals, not a diagnosis.", responses=ERRORS)
    app.state.service = service
    app.add_middleware(BodyLimit, limits={"/v1/ingest": config.max_file_mb * 2**20 + 2**20}, default=JSON_LIMIT)
    app.add_middleware(CatchAll, describe=_failure)  # added last: outside the limit, so it catches that too
    _add_error_handlers(app)
    bearer = HTTPBearer(auto_error=False, description="A key from `medassist serve keys add`.")

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if not service.auth_required():
            return
        if credentials is None or service.keys.verify(credentials.credentials) is None:
            raise HTTPException(401, "missing or invalid API key: send 'Authorization: Bearer <key>' with a key "
                                     "from 'medassist serve keys add'", headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorised)]

    @app.get("/healthz", response_model=Health, tags=["server"])
    def healthz() -> Health:
        """Whether the server is up, and which model (if any) writes answers; needs no key."""
        backend = service.backend
        return Health(status="ok", version=app.version, model=backend.model_name if backend else None,
                      backend=backend.name if backend else None, generates=service.agent.generate and bool(backend),
                      auth=service.auth_required(), worker=os.getpid())

    @app.post("/v1/ask", response_model=Answer, dependencies=guarded, tags=["answers"],
              responses={200: {"content": {"text/event-stream": {}}, "description": "The Answer, or its events."}})
    def ask(request: AskRequest):
        """Answer a question from the indexed sources with numbered citations (`medassist ask --json`)."""
        question = clean_text(request.question).strip()  # no control characters reach a client's terminal
        if not question:
            raise HTTPException(422, "question: holds no text")
        options = dict(route=request.route, use_rag=request.use_rag, k=request.k)
        if request.stream:
            events = (_sse(name, data) async for name, data in answer_events(service.agent, question, options))
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return service.agent.ask(question, **options)

    @app.get("/v1/search", response_model=list[PassageOut], dependencies=guarded, tags=["knowledge base"])
    def search(q: str = Query(min_length=1, max_length=4000, pattern=r"\S", description="What to search for."),
               k: int = Query(5, ge=1, le=100), route: Route | None = None,
               mode: str = Query("hybrid", pattern="^(hybrid|dense|sparse)$")):
        """Ranked passages with title, section, page, source and scores (`medassist search --json`)."""
        return [p.as_dict() for p in service.kb.search(q, k=k, route=route, mode=mode)]

    @app.get("/v1/sources", response_model=list[DocumentOut], dependencies=guarded, tags=["knowledge base"])
    def sources(missing: bool = Query(False, description="Only documents whose file is gone.")):
        """The indexed documents (`medassist sources --json`)."""
        return [d.as_dict() for d in (service.kb.missing() if missing else service.kb.documents())]

    @app.post("/v1/ingest", response_model=IngestOut, dependencies=guarded, tags=["knowledge base"])
    def ingest(files: list[UploadFile] = File(description="Markdown, text, PDF, HTML, DOCX, JSONL or JSON files."),
               route: Route | None = Form(None, description="Route tag for every chunk, overriding the files' own.")):
        """Add or update documents; each file is reported as added, replaced, unchanged, skipped or failed (with the
        reason), as `medassist ingest` does. A file of the same name as an earlier upload replaces it."""
        results = []
        with service.writing():
            for upload in files:
                name = _safe_name(upload.filename)
                if name is None:
                    results.append(IngestResultOut(path=str(upload.filename or ""), status="failed",
                                                   reason="the file needs a name (letters, digits, '.', '-', '_')"))
                    continue
                path = _save(upload, service.upload_dir / name)
                result = service.kb.ingest([path], route=route)[0]
                results.append(IngestResultOut(**{**result.as_dict(), "path": name}))
        counts = {}
        for result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        return IngestOut(results=results, counts=counts)

    @app.delete("/v1/sources/{key}", response_model=RemovedOut, dependencies=guarded, tags=["knowledge base"])
    def remove(key: str = PathParam(min_length=1, max_length=200, description="A doc id or its first 8+ characters, "
                                                                                 "or an uploaded file's name.")):
        """Remove a document completely (`medassist remove`)."""
        key = key.strip()
        uploaded = _safe_name(key)
        with service.writing():
            removed = service.kb.remove(key) or (service.kb.remove(str(service.upload_dir / uploaded))
                                                 if uploaded else [])
        if not removed:
            raise HTTPException(404, f"no document matches {key!r} (see GET /v1/sources)")
        return RemovedOut(removed=[d.as_dict() for d in removed])

    openai_compat.register(app, service, guarded)
    return app


def app_from_environment() -> FastAPI:
    """The uvicorn factory for `medassist serve` (each worker process builds its own app from the environment
    the command set: MEDASSIST_* settings, and whether it is bound off loopback)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(load_config(), public=os.environ.get("MEDASSIST_SERVE_PUBLIC") == "1")


def _sse(event: str, data) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


# --- uploads ----------------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^\w.\- ()+,]")


def _safe_name(filename: str | None) -> str | None:
    """An upload's name as a plain file name in HOME/uploads (no folders, no hidden files), or None."""
    name = _UNSAFE.sub("_", Path(clean_text(filename or "").replace("\\", "/")).name).strip()[:200]
    return name if name and not name.startswith(".") else None


def _save(upload: UploadFile, path: Path) -> Path:
    """Write the upload beside its final place, then move it there in one step."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload.")
    try:
        with os.fdopen(fd, "wb") as file:
            while block := upload.file.read(2**20):
                file.write(block)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


# --- errors -----------------------------------------------------------------------------------------
def _error(status: int, message: str, kind: str, **extra) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, **extra}}, status_code=status)


def _failure(exc: Exception) -> tuple[int, dict]:
    detail = error_detail(exc)
    status = {"service_unavailable": 503, "invalid_request_error": 422}.get(detail["type"], 500)
    return status, {"error": detail}


def _add_error_handlers(app: FastAPI) -> None:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found", 405: "method_not_allowed",
             413: "request_too_large", 422: "invalid_request_error"}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        response = _error(exc.status_code, str(exc.detail), kinds.get(exc.status_code, "error"))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        # Field and reason, never the input: it may be huge, or a secret pasted in the wrong place.
        fields = [{"field": ".".join(str(part) for part in error["loc"]), "reason": error["msg"]}
                  for error in exc.errors()]
        message = "; ".join(f"{f['field']}: {f['reason']}" for f in fields[:5]) or "invalid request"
        return _error(422, message, "invalid_request_error", param=fields[0]["field"] if fields else None,
                      fields=fields)


