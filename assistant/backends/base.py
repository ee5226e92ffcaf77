"""The backend contract and registry.

A backend turns a prompt (built by `finetune.prompt`) into a stream of text pieces. Each backend
module registers itself with a name and aliases; modules are imported only when chosen, so a
missing optional dependency (llama-cpp-python) costs nothing until someone asks for it.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 320  # reasoning + answer; ~20 s at 17 tok/s with the default model on 2 cores
    max_think_tokens: int = 160  # after this the reasoning is closed and the answer is asked for
    temperature: float = 0.0  # greedy: answers are reproducible and the grounding check is stable
    top_p: float = 0.95
    repetition_penalty: float = 1.15  # small models loop without it


class Backend(Protocol):
    name: str
    model_name: str
    eos_token: str

    def generate(self, prompt: str, settings: GenerationSettings, stop: list[str] | None = None,
                 cancel: threading.Event | None = None) -> Iterator[str]:
        """Stream text pieces; stop at EOS, at any string in `stop`, or as soon as `cancel` is set."""
        ...


# name -> module that registers it. The OpenAI-compatible and llama.cpp backends are the next to
# land (issue 3); they are listed here when they exist and are tested against real servers.
_MODULES = {"transformers": "assistant.backends.transformers_backend"}
ALIASES = {"hf": "transformers", "local": "transformers", "torch": "transformers"}
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
    """`text` up to the first stop string, and whether one was found (shared by every backend)."""
    positions = [text.find(s) for s in stop if s and s in text]
    return (text[: min(positions)], True) if positions else (text, False)
