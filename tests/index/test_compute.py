"""Device and dtype choice (index/compute.py): detected from the CPU's flags, overridden by the config."""

from __future__ import annotations

import numpy as np
import pytest

from index.compute import bf16_matmul_flags, choose_compute, cpu_flags

# A line of /proc/cpuinfo's flags from a Sapphire Rapids host, and one from a laptop without bf16 units.
SAPPHIRE_RAPIDS = "fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8".split()
LAPTOP = "fpu sse2 avx avx2 fma f16c bmi2".split()


def pick(*args, **kwargs) -> tuple[str, str]:
    compute = choose_compute(*args, **kwargs)
    return compute.device, compute.dtype


def test_bf16_matrix_instructions_are_read_from_the_flags():
    assert bf16_matmul_flags(SAPPHIRE_RAPIDS) == ["amx_bf16", "avx512_bf16"]
    assert bf16_matmul_flags(["avx512f", "avx512_bf16"]) == ["avx512_bf16"]  # Cooper Lake, Zen 4
    assert bf16_matmul_flags(LAPTOP) == []
    assert bf16_matmul_flags(["avx512f", "amx_tile"]) == []  # AMX tiles without the bf16 unit are not enough


def test_auto_picks_bf16_only_where_the_cpu_has_the_instructions_and_the_gpu_when_there_is_one():
    assert pick("auto", cuda=False, flags=SAPPHIRE_RAPIDS) == ("cpu", "bfloat16")
    assert pick(None, cuda=False, flags=LAPTOP) == ("cpu", "float32")
    assert pick("auto", cuda=True, flags=LAPTOP)[0] == "cuda"


def test_the_configured_dtype_wins_over_detection():
    assert pick("float32", cuda=False, flags=SAPPHIRE_RAPIDS) == ("cpu", "float32")
    assert pick("bfloat16", cuda=False, flags=LAPTOP) == ("cpu", "bfloat16")
    assert pick("float32", cuda=True, flags=SAPPHIRE_RAPIDS) == ("cuda", "float32")
    with pytest.raises(ValueError, match="compute_dtype"):
        pick("fp16", cuda=False, flags=LAPTOP)


def test_this_machines_flags_are_read():
    flags = cpu_flags()
    assert flags and all(isinstance(flag, str) and flag == flag.strip() for flag in flags)
    assert pick("auto", cuda=False)[1] == ("bfloat16" if bf16_matmul_flags(flags) else "float32")


def test_compute_dtype_comes_from_config_env_and_flags_and_a_bad_value_names_the_setting(tmp_path, monkeypatch):
    from assistant.config import ConfigError, load_config

    assert load_config(tmp_path).compute_dtype == "auto"
    (tmp_path / "config.toml").write_text('compute_dtype = "bfloat16"\n')
    assert load_config(tmp_path).compute_dtype == "bfloat16"
    monkeypatch.setenv("MEDASSIST_COMPUTE_DTYPE", "float32")
    config = load_config(tmp_path)
    assert config.compute_dtype == "float32" and config.knowledge_base().embedder.compute.dtype == "float32"
    assert load_config(tmp_path, compute_dtype="auto").compute_dtype == "auto"  # a flag wins over the variable
    monkeypatch.setenv("MEDASSIST_COMPUTE_DTYPE", "half")
    with pytest.raises(ConfigError, match="compute_dtype.*auto, bfloat16, float32"):
        load_config(tmp_path)


def test_bf16_embeddings_of_medical_text_point_where_fp32_ones_do():
    """bf16 keeps ~3 significant digits per weight; the embeddings must still be the same directions, or the
    vectors already stored in fp32 would be searched with shifted queries."""
    from corpus import STARTER_DIR
    from index.embed import Embedder

    texts = [paragraph for note in sorted(STARTER_DIR.glob("*.md"))[:6]
             for paragraph in note.read_text(encoding="utf-8").split("\n\n") if len(paragraph) > 80][:60]
    fp32, bf16 = (np.asarray(Embedder(compute_dtype=d).embed(texts)) for d in ("float32", "bfloat16"))
    assert Embedder(compute_dtype="bfloat16").compute.torch_dtype != Embedder(compute_dtype="float32").compute.torch_dtype
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert len(texts) >= 30 and cosine.min() >= 0.99
    assert not np.allclose(fp32, bf16, atol=1e-6)  # it really ran in bf16


def test_the_transformers_backend_loads_the_model_in_the_chosen_dtype_and_still_generates(tiny_model, tmp_path):
    import torch

    from assistant.backends import GenerationSettings, load_backend

    for dtype, expected in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        backend = load_backend("transformers", model=str(tiny_model), home=tmp_path, compute_dtype=dtype)
        assert backend.compute.dtype == dtype and next(backend.model.parameters()).dtype == expected
        assert "".join(backend.generate("hello", GenerationSettings(max_new_tokens=4))) is not None
