"""The openai backend against a real OpenAI-compatible server on loopback (llama-cpp-python's server
serving the packaged Gemma GGUF), and the in-process llamacpp backend on the same file."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import free_port, wait_for_port

from assistant.backends import GenerationSettings, load_backend
from assistant.backends.base import BackendError

PROMPT = "<start_of_turn>user\nName three fruits.<end_of_turn>\n<start_of_turn>model\n"
SHORT = GenerationSettings(max_new_tokens=24)


@pytest.fixture(scope="module")
def server_url(gemma_gguf):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gemma_gguf),
                             "--model_alias", "gemma-test", "--host", "127.0.0.1", "--port", str(port),
                             "--n_ctx", "4096"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc, timeout=120)
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def served(server_url):
    return load_backend("vllm", base_url=server_url)  # any alias of openai


@pytest.fixture(scope="module")
def in_process(gemma_gguf):
    return load_backend("llamacpp", home=gemma_gguf.parents[2])


def test_openai_backend_finds_the_served_model_and_streams(served):
    assert served.name == "openai" and served.model_name == "gemma-test"
    pieces = list(served.generate(PROMPT, SHORT))
    assert len(pieces) > 3 and "".join(pieces).strip()


@pytest.mark.parametrize("backend", ["served", "in_process"])
def test_stop_strings_and_cancel(backend, request):
    model = request.getfixturevalue(backend)
    full = "".join(model.generate("Count: 1, 2, 3, 4,", SHORT))
    assert " 6" in full  # a small model still counts
    assert "".join(model.generate("Count: 1, 2, 3, 4,", SHORT, stop=[" 6"])) == full[:full.index(" 6")]
    cancel, pieces = threading.Event(), []
    for piece in model.generate("Write a long story about a hospital.", GenerationSettings(max_new_tokens=200),
                                cancel=cancel):
        pieces.append(piece)
        if len(pieces) == 2:
            cancel.set()
    assert len(pieces) == 2


def test_server_and_in_process_llamacpp_give_the_same_greedy_text(served, in_process):
    assert "".join(served.generate(PROMPT, SHORT)) == "".join(in_process.generate(PROMPT, SHORT))


def test_unreachable_server_and_missing_url_are_clear_errors(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(BackendError, match="needs a server"):
        load_backend("openai")
    with pytest.raises(BackendError, match="cannot reach the model server"):
        load_backend("openai", base_url=f"http://127.0.0.1:{free_port()}/v1")


def test_server_error_is_reported_with_its_status(served):
    with pytest.raises(BackendError, match=r"answered HTTP \d{3}: .*max_tokens"):
        list(served.generate(PROMPT, GenerationSettings(max_new_tokens=-5)))


def test_llamacpp_rejects_a_non_gguf_model_and_a_peft_adapter(tmp_path, gemma_gguf):
    with pytest.raises(BackendError, match=".gguf"):
        load_backend("llamacpp", model=str(tmp_path))
    (tmp_path / "adapter").mkdir()
    with pytest.raises(BackendError, match="convert_lora_to_gguf"):
        load_backend("llamacpp", model=str(gemma_gguf), adapter=str(tmp_path / "adapter"))


@pytest.mark.slow
def test_converted_tokenizer_tokenizes_like_llama_cpp(in_process, gemma_models):
    """The safetensors folder's tokenizer (rebuilt from the GGUF) must give llama.cpp's own ids, <bos> first."""
    from transformers import AutoTokenizer

    ours = AutoTokenizer.from_pretrained(gemma_models / "gemma-3-270m")
    texts = ["Hello world, hypertension treatment", "Metformin 500 mg twice daily; eGFR < 30 → stop.\n\tDose ≥ 2 g",
             "<start_of_turn>user\nWhat is sepsis?<end_of_turn>\n", "  leading spaces and ünïcödé, 中文, emoji 🙂"]
    for text in texts:
        assert ours(text)["input_ids"] == in_process.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)


@pytest.mark.slow
def test_ask_through_the_openai_backend(server_url, tmp_path, monkeypatch):
    """`medassist ask --backend openai` end to end: a cited, checked answer from the served model."""
    monkeypatch.setenv("MEDASSIST_HOME", str(tmp_path / "home"))
    result = subprocess.run([str(Path(sys.executable).parent / "medassist"), "ask", "--json", "--backend", "openai",
                             "--base-url", server_url, "What is the apixaban dose for atrial fibrillation?"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["backend"] == "openai" and answer["model"] == "gemma-test"
    assert answer["citations"] and answer["route"] == "medication"
    numbers = {c["n"] for c in answer["citations"]}
    assert all(set(s["citations"]) <= numbers for s in answer["sentences"])
