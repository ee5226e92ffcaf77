"""Backend mechanics on a tiny random model: streaming, stop strings, token limits, cancellation, adapters,
and the generation settings that reach a backend from config."""

from __future__ import annotations

import threading

import pytest

from assistant.backends import GenerationSettings, available_backends, load_backend
from assistant.backends.base import BackendError

GREEDY = GenerationSettings(max_new_tokens=40, repetition_penalty=1.0)
PROMPT = "Question: what is the first line treatment for hypertension?"


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return load_backend("hf", model=str(tiny_model))  # an alias of transformers


def test_registry_lists_every_backend():
    assert available_backends() == ["llamacpp", "openai", "transformers"]


def test_stream_is_the_same_text_as_one_piece_and_respects_max_new_tokens(tiny):
    pieces = list(tiny.generate(PROMPT, GREEDY))
    text = "".join(pieces)
    assert len(pieces) > 5 and text.strip()
    assert tiny.count_tokens(text) <= GREEDY.max_new_tokens
    assert "".join(tiny.generate(PROMPT, GREEDY)) == text  # greedy decoding is reproducible


def test_stop_string_cuts_the_text_before_it(tiny):
    full = "".join(tiny.generate(PROMPT, GREEDY))
    stop = full[12:16]
    assert len(stop) == 4
    cut = "".join(tiny.generate(PROMPT, GREEDY, stop=[stop]))
    assert cut == full[:full.index(stop)]


def test_cancel_stops_the_stream(tiny):
    cancel = threading.Event()
    pieces = []
    for piece in tiny.generate(PROMPT, GenerationSettings(max_new_tokens=200), cancel=cancel):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()
    assert len(pieces) == 3


def test_adapter_changes_the_output_and_the_model_name(tiny, tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    # init_lora_weights=False: random B matrices, so the adapter is not a no-op.
    lora = get_peft_model(base, LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"],
                                           init_lora_weights=False))
    lora.save_pretrained(tmp_path / "my-adapter")
    tuned = load_backend("transformers", model=str(tiny_model), adapter=str(tmp_path / "my-adapter"))
    assert tuned.model_name.endswith("+my-adapter")
    assert "".join(tuned.generate(PROMPT, GREEDY)) != "".join(tiny.generate(PROMPT, GREEDY))


def test_missing_model_and_adapter_are_clear_errors(tiny_model, tmp_path):
    with pytest.raises(BackendError, match="adapter"):
        load_backend("transformers", model=str(tiny_model), adapter=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match="no config.json"):
        load_backend("transformers", model=str(tmp_path / "empty"))
    with pytest.raises(BackendError, match="unknown backend"):
        load_backend("telepathy")


def test_generation_settings_come_from_config_env_and_flags(tmp_path, monkeypatch):
    from assistant.config import ConfigError, load_config

    (tmp_path / "config.toml").write_text("temperature = 0.7\nmax_new_tokens = 64\n")
    monkeypatch.setenv("MEDASSIST_TOP_P", "0.5")
    settings = load_config(tmp_path, max_think_tokens=16).generation_settings()
    assert (settings.temperature, settings.max_new_tokens, settings.top_p, settings.max_think_tokens) == (0.7, 64, 0.5, 16)
    assert settings.repetition_penalty == GenerationSettings().repetition_penalty  # not set anywhere: the default
    assert load_config(tmp_path, temperature=0).generation_settings().temperature == 0  # 0 is greedy, allowed
    monkeypatch.setenv("MEDASSIST_TOP_P", "high")
    with pytest.raises(ConfigError, match="top_p"):
        load_config(tmp_path)


def test_the_model_writes_after_the_quotes_only_when_it_is_more_than_the_bare_packaged_model(tmp_path, monkeypatch):
    from assistant.config import ConfigError, load_config

    assert not load_config(tmp_path).generates()  # auto, the bare packaged Gemma-3-270M
    assert load_config(tmp_path, adapter="reader").generates() and load_config(tmp_path, backend="openai").generates()
    assert not load_config(tmp_path, backend="hf").generates()  # an alias of transformers
    assert load_config(tmp_path, generate="always").generates()
    assert not load_config(tmp_path, model="m", generate="never").generates()
    monkeypatch.setenv("MEDASSIST_GENERATE", "sometimes")
    with pytest.raises(ConfigError, match="generate"):
        load_config(tmp_path)


def test_a_stop_string_split_across_pieces_is_never_shown():
    from assistant.backends.base import StopStream

    stops = StopStream(["</think>"])
    shown = [stops.feed(p) for p in ["The answer <", "is 5 </th", "ink> and more"]]
    assert shown == ["The answer ", "<is 5 ", ""] and stops.stopped and stops.flush() == ""
    open_end = StopStream(["</think>"])
    assert open_end.feed("ends with </th") == "ends with " and open_end.flush() == "</th"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["reader", "recipe"])
def test_each_packaged_adapter_loads_on_the_cpu_and_changes_the_model(gemma_models, name):
    """`--adapter reader|recipe` resolve to the LoRAs in the package; each loads onto the converted Gemma and
    moves its next-token distribution (a LoRA saved with zero or missing weights would not)."""
    import torch

    from assistant.config import ADAPTERS

    model = str(gemma_models / "gemma-3-270m")
    base = load_backend("transformers", model=model, compute_dtype="float32")
    tuned = load_backend("transformers", model=model, adapter=str(ADAPTERS[name]), compute_dtype="float32")
    ids = base.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        before, after = (torch.log_softmax(b.model(ids).logits[0, -1], -1) for b in (base, tuned))
    assert tuned.model_name.endswith(f"+gemma3-270m-{name}")
    assert (after - before).abs().max() > 0.1
