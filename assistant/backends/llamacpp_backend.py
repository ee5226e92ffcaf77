"""In-process llama.cpp (the optional `llamacpp` extra): GGUF models, fast on CPU.

Build note: the wheel must be compiled with portable CPU flags here (see README, "llama.cpp"); the
default native build crashes on these CPUs.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterator

from assistant.backends.base import BackendError, GenerationSettings, register, until_stop
from assistant.backends.gguf_convert import DEFAULT_MODEL, Status, packaged_gguf, say

CONTEXT_TOKENS = 4096  # prompt (question + numbered sources) plus reasoning and answer


def resolve_gguf(model: str | None, home: Path, on_status: Status | None = None) -> Path:
    """The GGUF file to load: the packaged default, or a path the user gave."""
    if not model or model == DEFAULT_MODEL:
        return packaged_gguf(home, on_status)
    path = Path(model).expanduser()
    if path.suffix != ".gguf" or not path.is_file():
        raise BackendError(f"the llamacpp backend loads a .gguf file; {model} is not one (convert a Transformers "
                           "folder with llama.cpp's convert_hf_to_gguf.py)")
    return path


_silent_log = None


def _silence_llama_cpp_log() -> None:
    """llama.cpp prints some notices to stderr even with verbose=False, which garbles the chat screen;
    load failures still raise (as ValueError), so nothing is lost by dropping its log."""
    global _silent_log
    if _silent_log is None:
        import ctypes

        import llama_cpp

        _silent_log = llama_cpp.llama_log_callback(lambda level, text, user_data: None)  # kept: C holds a pointer
        llama_cpp.llama_log_set(_silent_log, ctypes.c_void_p(0))


@register("llamacpp")
class LlamaCppBackend:
    name = "llamacpp"

    def __init__(self, model: str | None = None, adapter: str | None = None, home: Path | str | None = None,
                 on_status: Status | None = None, **_ignored):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BackendError("the llamacpp backend needs llama-cpp-python: install the project with the "
                               "'llamacpp' extra (see README, llama.cpp)") from None
        _silence_llama_cpp_log()
        from assistant.config import default_home

        gguf = resolve_gguf(model, Path(home) if home else default_home(), on_status)
        if adapter and not (adapter.endswith(".gguf") and Path(adapter).is_file()):
            raise BackendError(f"adapter {adapter}: llama.cpp takes a LoRA adapter as a .gguf file (convert a PEFT "
                               "folder with llama.cpp's convert_lora_to_gguf.py)")
        self.model_name = (model or DEFAULT_MODEL) + (f"+{Path(adapter).stem}" if adapter else "")
        say(on_status, f"Loading {gguf.name} with llama.cpp")
        try:
            self.llm = Llama(model_path=str(gguf), n_ctx=CONTEXT_TOKENS, n_threads=os.cpu_count(),
                             lora_path=adapter, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp cannot load {gguf}: {exc}") from None
        self.eos_token = ""  # llama.cpp stops at the model's EOS itself

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def generate(self, prompt: str, settings: GenerationSettings, stop: list[str] | None = None,
                 cancel: threading.Event | None = None) -> Iterator[str]:
        stream = self.llm.create_completion(prompt, max_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                            top_p=settings.top_p, repeat_penalty=settings.repetition_penalty,
                                            stop=stop or [], stream=True)
        try:
            yield from until_stop((event["choices"][0]["text"] for event in stream), stop, cancel)
        finally:
            stream.close()  # llama.cpp stops decoding when its generator is closed
