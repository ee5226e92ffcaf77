"""The default model: GGUF -> safetensors conversion, its tokenizer, streaming and cancellation (slow)."""

from __future__ import annotations

import threading

import pytest

from assistant.backends import GenerationSettings, load_backend
from assistant.backends.base import BackendError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma(gemma_models):
    return load_backend("transformers", home=gemma_models.parent)


def test_converted_tokenizer_adds_bos_and_splits_words_like_gemma(gemma):
    tokenizer = gemma.tokenizer
    ids = tokenizer("Hello world, hypertension treatment")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id == 2
    # Whole words are single pieces in Gemma's vocabulary; a broken (Unigram or character) tokenizer splits them.
    assert [tokenizer.decode([i]) for i in ids[1:]] == ["Hello", " world", ",", " hypertension", " treatment"]
    text = "Metformin 500 mg twice daily; eGFR < 30 → stop.\n\tDose ≥ 2 g"
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def test_converted_tokenizer_matches_the_gguf_vocabulary(gemma, gemma_models):
    from gguf import GGUFReader

    field = GGUFReader(str(next((gemma_models / "gguf").glob("*.gguf")))).fields["tokenizer.ggml.tokens"]
    gguf_tokens = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    vocab = gemma.tokenizer.get_vocab()
    assert all(vocab[token] == i for i, token in enumerate(gguf_tokens[:5000]))


def test_generation_streams_and_stops(gemma):
    pieces = list(gemma.generate("<start_of_turn>user\nName a fruit.<end_of_turn>\n<start_of_turn>model\n",
                                 GenerationSettings(max_new_tokens=12)))
    assert len(pieces) > 1 and "".join(pieces).strip()
    stopped = "".join(gemma.generate("Count: 1, 2, 3, 4,", GenerationSettings(max_new_tokens=30), stop=["7"]))
    assert "7" not in stopped


def test_cancel_stops_generation_early(gemma):
    cancel = threading.Event()
    pieces = []
    for piece in gemma.generate("Write a long story about a hospital.", GenerationSettings(max_new_tokens=200),
                                cancel=cancel):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()
    assert len(pieces) == 3


def test_missing_adapter_is_a_clear_error(gemma_models, tmp_path):
    with pytest.raises(BackendError, match="adapter"):
        load_backend("transformers", home=gemma_models.parent, adapter=str(tmp_path / "nope"))


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(BackendError, match="unknown backend"):
        load_backend("telepathy")
