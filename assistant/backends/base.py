"""The backend contract and registry.

A backend turns a prompt (built by `finetune.prompt`) into a stream of text pieces. Each backend
module registers itself with a name and aliases; modules are imported only when chosen, so a
missing optional dependency (llama-cpp-python) costs nothing until someone asks for it.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator, Protocol


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 320  # reasoning + answer; ~20 s at 17 tok/s with the default model on 2 cores
    max_think_tokens: int = 160  # after this the reasoning is closed and the answer is asked for
    temperature: float = 0.0  # greedy: answers are reproducible and the grounding check is stable
    top_p: float = 0.95
    repetition_penalty: float = 1.15  # small models loop without it

    def phases(self) -> tuple[GenerationSettings, GenerationSettings]:
        """(reasoning, answer) settings for a two-step generation: reasoning within max_think_tokens, then the
        answer asked for explicitly with the rest (at least 32 tokens), so a model that never closes <think>
        (the untuned default) still answers."""
        return (replace(self, max_new_tokens=self.max_think_tokens),
                replace(self, max_new_tokens=max(32, self.max_new_tokens - self.max_think_tokens)))


class Backend(Protocol):
    name: str
    model_name: str
    eos_token: str

    def generate(self, prompt: str, settings: GenerationSettings, stop: list[str] | None = None,
                 cancel: threading.Event | None = None) -> Iterator[str]:
        """Stream text pieces; stop at EOS, at any string in `stop`, or as soon as `cancel` is set."""
        ...


# name -> module that registers it
_MODULES = {"transformers": "assistant.backends.transformers_backend",
            "openai": "assistant.backends.openai_backend",
            "llamacpp": "assistant.backends.llamacpp_backend"}
ALIASES = {"hf": "transformers", "local": "transformers", "torch": "transformers",
           "vllm": "openai", "ollama": "openai", "server": "openai", "llama.cpp": "llamacpp", "llama-cpp": "llamacpp"}
_REGISTRY: dict[str, Callable[..., Backend]] = {}


class BackendError(Exception):
    """A backend cannot be created or reached; the message says what to do."""


def register(name: str):
    def decorate(factory):
        _REGISTRY[name] = factory
        return factory

    return decorate


def available_backends() -> list[str]:
    return sorted(_MODULES)


def load_backend(name: str, **options) -> Backend:
    canonical = ALIASES.get(name, name)
    if canonical not in _MODULES:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(available_backends())} "
                           f"(aliases: {', '.join(sorted(ALIASES))})")
    importlib.import_module(_MODULES[canonical])
    return _REGISTRY[canonical](**options)


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """`text` up to the first stop string, and whether one was found."""
    positions = [text.find(s) for s in stop if s and s in text]
    return (text[: min(positions)], True) if positions else (text, False)


class StopStream:
    """Stop strings over streamed pieces, shared by every backend.

    A stop string can span pieces ("</th" + "ink>"), and text already shown cannot be taken back, so
    the tail that could begin a stop string is held until the next piece decides. `feed` returns
    what is safe to show; `stopped` turns true at the first stop string; `flush` releases the held
    tail when the stream ends without one.
    """

    def __init__(self, stop: list[str] | None):
        self.stop = [s for s in stop or [] if s]
        self.text, self.shown, self.stopped = "", 0, False

    def feed(self, piece: str) -> str:
        self.text += piece
        kept, self.stopped = cut_at_stop(self.text, self.stop)
        held = 0 if self.stopped else max(
            (n for s in self.stop for n in range(min(len(s) - 1, len(kept)), 0, -1) if kept.endswith(s[:n])), default=0)
        return self._release(len(kept) - held)

    def flush(self) -> str:
        return "" if self.stopped else self._release(len(self.text))

    def _release(self, upto: int) -> str:
        out = self.text[self.shown:upto] if upto > self.shown else ""
        self.shown = max(self.shown, upto)
        return out


def until_stop(pieces: Iterable[str], stop: list[str] | None, cancel: threading.Event | None) -> Iterator[str]:
    """`pieces` up to the first stop string (see StopStream), ending as soon as `cancel` is set: the one
    streaming loop of every backend's generate(), each of which closes its own source when this ends."""
    stops = StopStream(stop)
    for piece in pieces:
        if cancel is not None and cancel.is_set():
            return
        shown = stops.feed(piece)
        if shown:
            yield shown
        if stops.stopped:
            return
    rest = stops.flush()
    if rest:
        yield rest
