"""A failure a user can meet (a model server down or failing mid-answer, a locked database, a Chroma error), in
one line: the chat shows it and goes on. Our own errors already say what to do; others are named by their type."""

from __future__ import annotations


def describe(exc: BaseException) -> str:
    from assistant.backends.base import BackendError
    from assistant.config import ConfigError
    from index.store import StoreError

    if isinstance(exc, (BackendError, ConfigError, StoreError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
