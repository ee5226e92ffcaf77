"""A tiny random Llama-architecture model with a tokenizer trained in-process, saved as a Transformers folder.

It loads in well under a second and generates hundreds of tokens a second, so tests of mechanics
(streaming, stop strings, cancellation, adapters, training loops) do not wait for a real model. It has
the same seven projection modules (q/k/v/o/gate/up/down_proj) as the DeepSeek-R1-Distill models.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>"]
# Enough medical words that common prompt text becomes whole-word pieces, not single characters.
CORPUS = """
Below is an instruction that describes a task, paired with an input that provides further context.
You are a medical expert with advanced knowledge in clinical reasoning, diagnostics, and treatment planning.
Question Response Sources think answer hypertension diabetes metformin lisinopril amlodipine pneumonia asthma
first line treatment for high blood pressure is a thiazide diuretic or an ACE inhibitor. Fever cough chest pain.
The patient is a 54 year old man with type 2 diabetes. Dose 500 mg twice daily. Check kidney function.
""" * 3


def make_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Write the model and tokenizer to `folder` (created) and return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(CORPUS.splitlines(), trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL,
        show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                                             special_tokens=[("<bos>", tokenizer.token_to_id("<bos>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, initializer_range=0.5)
    folder.mkdir(parents=True, exist_ok=True)
    model = LlamaForCausalLM(config)
    # Random weights would often pick <eos> or <pad> first and end every test at once: suppress the specials,
    # so a generation runs to max_new_tokens unless a stop string or cancellation ends it.
    model.generation_config = GenerationConfig(bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                                               pad_token_id=fast.pad_token_id,
                                               suppress_tokens=[fast.convert_tokens_to_ids(t) for t in SPECIAL])
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
