"""Fine-tuning on a GPU: the seeds' recipe through our recipe code, and its speed at the seeds' scale.

(a) Recipe: the seeds' config (medical_o1_unsloth) with Unsloth on a model folder and a data file;
    eval loss before and after, then base vs tuned answers on held-out rows (in a fresh process with
    plain Transformers + PEFT, so Unsloth's patches do not touch the comparison).

    python benchmarks/finetune_gpu.py --model /root/gemma-3-270m --data .gpu/medical_o1_sft_en.jsonl \
        --out $OUT/finetune_recipe.json [--max-steps 60] [--n 5]

(b) --throughput: DeepSeek-R1-Distill-Llama-8B's shape (Llama 3.1 8B) with random weights, saved once
    as bf16 safetensors; our Unsloth path (4-bit QLoRA) against a plain Transformers + PEFT + TRL bf16
    LoRA baseline on the same rows, each in its own process: seq 2048, 2 rows x 4 accumulation.
    Speed and memory do not depend on the weights' values, so random weights measure the real recipe.
    Rows: synthetic ones that fill the sequence length, or real medical-o1 rows (--rows), tokenized
    by a tokenizer trained on them (lengths close to a real one's; see build_tokenizer).

    python benchmarks/finetune_gpu.py --throughput --steps 8 --out $OUT/finetune_throughput.json \
        [--model-dir /root/llama8b-random] [--variants unsloth,unsloth-gc,notebook,hf,hf-4bit] [--rows FILE]

(c) --check-packing: do rows packed into one sequence stay apart (Unsloth on a GPU, SDPA elsewhere)?
    --chart PNG draws every throughput result in benchmarks/results (on any machine).

On the lent GPU machine (../shared/GPU.md): unpack the bundle first and put it on PYTHONPATH; the
repository need not be installed (this script puts its root on sys.path).
--dry-run runs either mode on the CPU with a tiny model, in seconds, to check the plumbing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never wait for the Hub

from common import read_jsonl, table  # noqa: E402  (benchmarks/, where this script lives, is on sys.path)
from finetune.config import load_config  # noqa: E402  (after sys.path)

PEAK_BF16_FLOPS = 790e12  # the H200's measured dense bf16 peak (../shared/GPU.md); MFU is against this
LLAMA_8B = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                intermediate_size=14336, vocab_size=128256, rope_theta=500000.0, rms_norm_eps=1e-5,
                max_position_embeddings=8192, tie_word_embeddings=False)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, vocab_size=1024, max_position_embeddings=4096, tie_word_embeddings=False)
WORDS = ("patient fever cough chest pain hypertension diabetes metformin lisinopril kidney function dose twice "
         "daily first line treatment diagnosis creatinine sodium potassium troponin sepsis antibiotic").split()


def machine() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    info = {"date": datetime.now().astimezone().isoformat(timespec="seconds"), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    for name in ("torch", "transformers", "trl", "peft", "unsloth", "bitsandbytes", "datasets"):
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = None
    return info


# ---------------------------------------------------------------- models and data made here
def build_tokenizer(folder: Path, texts: list[str], vocab_size: int = 32000):
    """A byte-level BPE tokenizer trained in-process on `texts` (no Hub), with Llama-3-style special tokens.

    Trained on the benchmark's own rows, so that real rows come out at a realistic length: on the
    1,204 medical-o1 rows it gives 693 tokens per row on average where Gemma-3's tokenizer gives 737.
    Only lengths matter here: with random weights, which ids the tokens get does not change the speed.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]  # ids 0, 1, 2: the model's config uses them
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=special[0], eos_token=special[1],
                                   pad_token=special[2])
    fast.save_pretrained(folder)
    return fast


def training_texts(data: Path, eos_token: str = "") -> list[str]:
    """The medical-o1 rows of a .jsonl file as finetune.prompt's training texts."""
    from finetune.prompt import build_training_text

    return [build_training_text(r["Question"], r["Complex_CoT"], r["Response"], eos_token) for r in read_jsonl(data)]


def build_random_model(folder: Path, shape: dict) -> Path:
    """A randomly initialised Llama of `shape`, saved once as bf16 safetensors (16 GB for the 8B shape).

    Its tokenizer is written next to it by each run (build_tokenizer), for that run's rows.
    """
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, bos_token_id=0, eos_token_id=1, pad_token_id=2, dtype="bfloat16")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    with torch.device(device):  # initialising 8B parameters is seconds on a GPU, minutes on a CPU
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, max_shard_size="5GB")
    print(f"built a random {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B-parameter Llama in {folder} "
          f"({time.perf_counter() - started:.0f} s)")
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return folder


def llama_params(shape: dict) -> int:
    """Parameter count from the shape: embeddings, untied head, and per layer attention (GQA), MLP, norms."""
    h, layers, inter, vocab = shape["hidden_size"], shape["num_hidden_layers"], shape["intermediate_size"], \
        shape["vocab_size"]
    kv = h // shape["num_attention_heads"] * shape["num_key_value_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter + 2 * h
    return 2 * vocab * h + layers * per_layer + h


def synthetic_rows(path: Path, n: int, words: int) -> Path:
    """Rows whose reasoning is longer than any sequence length used here, so every row fills it exactly."""
    import random

    rng = random.Random(3407)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            reasoning = " ".join(rng.choice(WORDS) for _ in range(words))
            handle.write(json.dumps({"Question": f"Case {i}: {' '.join(rng.choice(WORDS) for _ in range(12))}?",
                                     "Complex_CoT": reasoning, "Response": "Metformin."}) + "\n")
    return path


# ---------------------------------------------------------------- (b) throughput, one variant per process
VARIANTS = {
    # our path: Unsloth, 4-bit QLoRA base, its offloaded gradient checkpointing, 8-bit Adam (the seeds' recipe)
    "unsloth": {"model.backend": "unsloth", "model.load_in_4bit": "true", "train.gradient_checkpointing": "unsloth"},
    # the same with plain (not offloaded) gradient checkpointing: activations stay on the GPU
    "unsloth-gc": {"model.backend": "unsloth", "model.load_in_4bit": "true", "train.gradient_checkpointing": "true"},
    # ours with train.packing: several real rows per 2048-token sequence (only changes anything with --rows)
    "unsloth-packed": {"model.backend": "unsloth", "model.load_in_4bit": "true",
                       "train.gradient_checkpointing": "unsloth", "train.packing": "true"},
    # the baseline: plain Transformers + PEFT + TRL, bf16 base, Transformers' gradient checkpointing
    "hf": {"model.backend": "hf", "model.load_in_4bit": "false", "model.dtype": "bfloat16",
           "train.gradient_checkpointing": "true"},
    # plain QLoRA (Transformers + bitsandbytes 4-bit + PEFT + TRL): the same memory class as ours, without Unsloth
    "hf-4bit": {"model.backend": "hf", "model.load_in_4bit": "true", "train.gradient_checkpointing": "true"},
    # "notebook" (see notebook_child): the seeds' Unsloth code as they run it, without our recipe around it
}


def speed(step_times: list[float], step_tokens: list[float], total_params: int) -> dict:
    """Throughput over steps 2..N (the first compiles and warms up): tokens / seconds, and its MFU.

    MFU counts 6 x parameters FLOPs per token (2N forward + 4N backward, the usual convention; LoRA
    skips the frozen weights' gradients, about 2N, and checkpointing recomputes the forward, +2N, so
    the GPU does about as much; attention, ~7 % more at 2048 tokens, is not counted).
    """
    tokens_per_s = sum(step_tokens) / sum(step_times)
    return {"step_s": [round(x, 3) for x in step_times], "median_step_s": round(statistics.median(step_times), 3),
            "tokens_per_step": round(statistics.mean(step_tokens)), "tokens_per_s": round(tokens_per_s, 1),
            "seconds_for_60_steps": round(60 * sum(step_times) / len(step_times), 1),  # loading not included
            "mfu": round(6 * total_params * tokens_per_s / PEAK_BF16_FLOPS, 4)}


def memory(fallback_gib: float) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30 if cuda else fallback_gib, 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None}


def throughput_child(variant: str, model_dir: str, data: str, steps: int, seq: int, workdir: str,
                     total_params: int) -> dict:
    """Setup and train one variant through our recipe; tokens are the recipe's own count of non-padding tokens."""
    from finetune.recipe import FinetuneRecipe

    cfg = load_config("medical_o1_unsloth", {
        **VARIANTS[variant], "model.name": model_dir, "data.path": data, "data.eval_rows": "0", "eval.every": "0",
        "train.max_steps": str(steps), "model.max_seq_length": str(seq), "output.dir": f"{workdir}/{variant}",
        "output.merged": "false", "output.gguf": "null", "log.every": "1"})
    recipe = FinetuneRecipe(cfg)
    started = time.perf_counter()
    recipe.setup()
    setup_s = time.perf_counter() - started
    result = recipe.train()
    records = [r for r in recipe.logger.records if "loss" in r]
    step_times = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(records, records[1:])]  # steps 2..N
    step_tokens = [r["tokens_per_s"] * dt for r, dt in zip(records[1:], step_times)]
    return {"variant": variant, "backend": result.backend, "precision": result.precision,
            "optimizer": result.optimizer, "padding_free": bool(getattr(recipe.trainer.args, "padding_free", False)),
            "setup_s": round(setup_s, 1), "steps": result.steps, **speed(step_times, step_tokens, total_params),
            "recipe_logged_tokens_per_s": round(result.tokens_per_s, 1), **memory(result.peak_mem_gib),
            "losses": [round(r["loss"], 4) for r in records]}


def notebook_child(model_dir: str, data: str, steps: int, seq: int, workdir: str, total_params: int) -> dict:
    """The seeds' code path, written out here without our recipe: Unsloth's loader and LoRA, a text column,
    TRL's SFTTrainer. If our recipe ran slower than this, our wrapping would be losing what Unsloth gives.
    Only for synthetic rows, which all fill `seq` (nothing here counts padding)."""
    import unsloth  # noqa: F401  (first, as in the seeds)
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer
    from unsloth import FastLanguageModel

    started = time.perf_counter()
    model, tokenizer = FastLanguageModel.from_pretrained(model_name=model_dir, max_seq_length=seq, dtype=None,
                                                         load_in_4bit=True)
    model = FastLanguageModel.get_peft_model(
        model, r=16, lora_alpha=16, lora_dropout=0, bias="none", use_gradient_checkpointing="unsloth",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        random_state=3407, use_rslora=False, loftq_config=None)
    texts = training_texts(Path(data), tokenizer.eos_token)
    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

    trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=Dataset.from_dict({"text": texts}),
                         callbacks=[StepClock()], args=SFTConfig(
                             dataset_text_field="text", max_length=seq, per_device_train_batch_size=2,
                             gradient_accumulation_steps=4, warmup_steps=5, max_steps=steps, learning_rate=2e-4,
                             bf16=True, logging_steps=1, optim="adamw_8bit", weight_decay=0.01,
                             lr_scheduler_type="linear", seed=3407, output_dir=f"{workdir}/notebook",
                             report_to="none", save_strategy="no"))
    setup_s = time.perf_counter() - started
    trainer.train()
    step_times = [b - a for a, b in zip(ends, ends[1:])]
    losses = [round(r["loss"], 4) for r in trainer.state.log_history if "loss" in r]
    return {"variant": "notebook", "backend": "unsloth (seeds' code)", "precision": "4-bit base, bfloat16",
            "optimizer": "adamw_8bit", "padding_free": bool(getattr(trainer.args, "padding_free", False)),
            "setup_s": round(setup_s, 1), "steps": trainer.state.global_step,
            **speed(step_times, [2 * 4 * seq] * len(step_times), total_params), **memory(0.0), "losses": losses}


def throughput(args) -> dict:
    import torch

    shape = TINY if args.dry_run else LLAMA_8B
    seq = 256 if args.dry_run else 2048
    model_dir = build_random_model(Path(args.model_dir), shape)
    work = Path(tempfile.mkdtemp(prefix="ft-throughput-"))
    if args.rows:  # real rows, in file order: steps x 8 (plus a few), 4x that when a variant packs them
        packs = any(VARIANTS.get(v, {}).get("train.packing") == "true" for v in args.variants.split(","))
        lines = Path(args.rows).read_text(encoding="utf-8").splitlines()[: (args.steps * 8 + 8) * (4 if packs else 1)]
        data = work / "rows.jsonl"
        data.write_text("\n".join(lines) + "\n", encoding="utf-8")
        texts = training_texts(Path(args.rows))  # all of them, as build_tokenizer's docstring measured
    else:  # synthetic rows longer than seq: every row fills it exactly
        data = synthetic_rows(work / "rows.jsonl", args.steps * 8 + 8, words=seq * 2)
        texts = [" ".join(WORDS)] * 20 + [Path(ROOT / "finetune" / "prompt.py").read_text()]
    build_tokenizer(model_dir, texts, vocab_size=min(32000, shape["vocab_size"]))
    total = llama_params(shape)
    results = []
    for variant in args.variants.split(","):
        if variant not in VARIANTS and variant != "notebook":
            raise SystemExit(f"unknown variant {variant!r}: choose from {', '.join([*VARIANTS, 'notebook'])}")
        if variant == "notebook" and args.rows:
            raise SystemExit("the notebook variant counts tokens as seq x rows: use it without --rows")
        if (variant.startswith("unsloth") or variant == "notebook") and not torch.cuda.is_available():
            print(f"skipping {variant}: Unsloth needs a CUDA GPU")
            continue
        target = work / f"{variant}.json"
        child = (f"notebook_child({str(model_dir)!r}, " if variant == "notebook"
                 else f"throughput_child({variant!r}, {str(model_dir)!r}, ")
        code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'benchmarks')!r});"
                f"import finetune_gpu as bench;"
                f"json.dump(bench.{child}{str(data)!r}, {args.steps}, {seq}, {str(work)!r}, {total}), "
                f"open({str(target)!r}, 'w'))")
        print(f"--- {variant}: {args.steps} steps in a fresh process", flush=True)
        done = subprocess.run([sys.executable, "-c", code])
        if done.returncode != 0 or not target.exists():
            results.append({"variant": variant, "error": f"exit code {done.returncode} (output above)"})
            continue
        results.append(json.loads(target.read_text()))
    ok = [r for r in results if "error" not in r]
    rows = f"{Path(args.rows).name} rows" if args.rows else "synthetic rows filling seq"
    print(f"\nLlama-shaped model, {total / 1e9:.2f}B parameters (random weights), seq {seq}, 2 rows x 4 "
          f"accumulation, {rows}; steps 2..{args.steps}")
    print(table(["variant", "precision", "load s", "step s", "tokens/step", "tokens/s", "60 steps (s)",
                 "peak alloc GiB", "MFU"],
                [[r["variant"], r["precision"], r["setup_s"], r["median_step_s"], f"{r['tokens_per_step']:,}",
                  f"{r['tokens_per_s']:,.0f}", r["seconds_for_60_steps"], r["peak_allocated_gib"],
                  f"{100 * r['mfu']:.1f} %"] for r in ok]))
    rate, peak = {}, {}  # per variant: mean tokens/s over its runs (a variant may be listed twice), peak memory
    for r in ok:
        rate.setdefault(r["variant"], []).append(r["tokens_per_s"])
        peak[r["variant"]] = r["peak_allocated_gib"]
    ratios = {f"{a}/hf": round(statistics.mean(rate[a]) / statistics.mean(rate["hf"]), 2)
              for a in rate if a != "hf" and "hf" in rate}
    for name, ratio in ratios.items():
        a = name.split("/")[0]
        print(f"{name}: {ratio}x tokens/s at {peak[a] / peak['hf']:.0%} of the peak memory")
    return {"mode": "throughput", "shape": shape, "params": total, "seq": seq, "steps": args.steps,
            "rows": Path(args.rows).name if args.rows else "synthetic", "peak_flops": PEAK_BF16_FLOPS,
            "results": results, "speedup_over_hf": ratios}


# ---------------------------------------------------------------- (c) do packed rows stay apart?
def packing_check() -> dict:
    """Row B's logits when packed after row A into one sequence (position ids restarting at B) against
    B alone. Equal: the attention keeps packed rows apart, and train.packing is safe with it.
    Unsloth on a CUDA GPU; Transformers' SDPA elsewhere (which is why the hf backend refuses packing)."""
    import importlib.util

    import torch

    folder = Path(tempfile.mkdtemp(prefix="ft-packing-")) / "model"
    shape = dict(TINY, hidden_size=256, num_attention_heads=4, num_key_value_heads=2, intermediate_size=512)
    build_random_model(folder, shape)
    build_tokenizer(folder, [" ".join(WORDS)] * 20, vocab_size=shape["vocab_size"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and importlib.util.find_spec("unsloth"):
        from unsloth import FastLanguageModel

        model, _ = FastLanguageModel.from_pretrained(model_name=str(folder), max_seq_length=256, dtype=torch.bfloat16,
                                                     load_in_4bit=False)
        model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=16, use_gradient_checkpointing=False,
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                 "gate_proj", "up_proj", "down_proj"])
        implementation = "unsloth"
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device)
        implementation = f"transformers {model.config._attn_implementation}"
    model.train()  # padding-free batches are a training path
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(3, shape["vocab_size"], (1, 40), generator=generator)
    b = torch.randint(3, shape["vocab_size"], (1, 24), generator=generator)
    positions = torch.cat([torch.arange(40), torch.arange(24)])[None]
    alone = model(input_ids=b.to(device)).logits.float().detach()
    packed = model(input_ids=torch.cat([a, b], 1).to(device), position_ids=positions.to(device)).logits
    packed = packed.float().detach()[:, 40:]
    diff, scale = (packed - alone).abs().max().item(), alone.abs().max().item()
    apart = diff <= 0.02 * scale  # bf16 rounding moves logits by well under 1 %; seeing row A moves them by far more
    print(f"{implementation}: row B packed after row A vs alone: max |logit difference| {diff:.4f} "
          f"(logits up to {scale:.3f}): {'kept apart' if apart else 'ROWS SEE EACH OTHER'}")
    return {"mode": "packing-check", "implementation": implementation, "max_abs_diff": diff, "logit_scale": scale,
            "kept_apart": apart}


# ---------------------------------------------------------------- (a) the recipe, then base vs tuned
def recipe(args) -> dict:
    from transformers import AutoTokenizer

    from finetune.metrics import read_metrics
    from finetune.prompt import build_prompt
    from finetune.recipe import run

    model, data = args.model, args.data
    if args.dry_run:
        folder = Path(tempfile.mkdtemp(prefix="ft-dry-"))
        model = str(build_random_model(folder / "model", TINY))
        data = str(synthetic_rows(folder / "rows.jsonl", 24, words=40))
        build_tokenizer(Path(model), training_texts(Path(data)), vocab_size=TINY["vocab_size"])
    if not model or not data:
        raise SystemExit("give --model FOLDER and --data FILE (or --dry-run)")
    # GPU.md: a tokenizer rebuilt differently on the GPU gave wrong ids and no <bos>; show them before training.
    tokenizer = AutoTokenizer.from_pretrained(model)
    first_ids = tokenizer(build_prompt("x"))["input_ids"][:6]
    print(f"tokenizer: first prompt ids {first_ids}, bos {tokenizer.bos_token!r} = {tokenizer.bos_token_id}, "
          f"{'starts with bos' if first_ids[:1] == [tokenizer.bos_token_id] else 'NO BOS FIRST'}")
    out = Path(args.workdir or tempfile.mkdtemp(prefix="ft-recipe-")) / "run"
    overrides = {"model.name": model, "data.path": data, "output.dir": str(out), "train.max_steps": str(args.max_steps),
                 "model.backend": "hf" if args.dry_run else args.backend, "data.eval_rows": str(args.eval_rows),
                 "output.merged": "false", "output.gguf": "null", "log.every": str(max(1, args.max_steps // 12))}
    if args.dry_run:
        overrides.update({"model.max_seq_length": "256", "data.eval_rows": "4", "eval.every": "1",
                          "train.optimizer": "adamw_torch"})
    cfg = load_config("medical_o1_unsloth", overrides)
    started = time.perf_counter()
    result, outputs = run(cfg)
    wall = time.perf_counter() - started
    compare_json = out / "compare.json"
    n, new_tokens = (2, 8) if args.dry_run else (args.n, args.max_new_tokens)
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from finetune.evaluate import compare;"
            f"c = compare({str(out / 'adapter')!r}, n={n}, max_new_tokens={new_tokens});"
            f"open({str(out / 'compare.md')!r}, 'w').write(c.markdown());"
            f"json.dump(dict(base_loss=c.base_loss, tuned_loss=c.tuned_loss, questions=[e.question for e in c.examples],"
            f" base=c.base_answers, tuned=c.tuned_answers), open({str(compare_json)!r}, 'w'))")
    print("--- base vs tuned on held-out rows (plain Transformers + PEFT, fresh process)", flush=True)
    subprocess.run([sys.executable, "-c", code], check=True)
    compared = json.loads(compare_json.read_text())
    for i, question in enumerate(compared["questions"], 1):
        print(f"\n[{i}] {question[:200]}\n  base : {compared['base'][i - 1][:300]!r}\n"
              f"  tuned: {compared['tuned'][i - 1][:300]!r}")
    records = read_metrics(out / "metrics.jsonl")
    losses = [(r["step"], round(r["loss"], 4)) for r in records if "loss" in r]
    print(f"\n{cfg.model.name} on {Path(data).name}: {result.steps} steps, {result.backend} ({result.precision}), "
          f"{result.runtime_s:.0f} s training, {wall:.0f} s with loading and saving")
    print(table(["measure", "value"], [
        ["train loss (step: loss)", ", ".join(f"{s}: {x}" for s, x in losses)],
        ["eval loss in training (step: loss)", ", ".join(f"{s}: {x:.4f}" for s, x in result.eval_losses)],
        ["eval loss, compare rows: base / tuned", f"{compared['base_loss']:.4f} / {compared['tuned_loss']:.4f}"],
        ["tokens/s", f"{result.tokens_per_s:,.0f}"], ["peak memory GiB", f"{result.peak_mem_gib:.2f}"]]))
    return {"mode": "recipe", "config": cfg.to_dict(), "result": result.__dict__, "losses": losses,
            "compare": compared, "output_dir": str(out)}


def chart(target: Path) -> None:
    """Tokens/s of every throughput run in benchmarks/results (finetune_gpu_throughput*.json): one panel
    per kind of rows, one dot per run, the bar at the median; on the bar its ratio to the baseline's
    median and its peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = ["hf", "hf-4bit", "notebook", "unsloth", "unsloth-gc", "unsloth-packed"]
    labels = {"hf": "TRL LoRA\nbf16 (baseline)", "hf-4bit": "TRL QLoRA\n4-bit", "notebook": "seeds' Unsloth\ncode",
              "unsloth": "ours: Unsloth\nQLoRA", "unsloth-gc": "ours, plain\ncheckpointing",
              "unsloth-packed": "ours, rows\npacked"}
    panels: dict[str, dict[str, list[dict]]] = {}
    for path in sorted((ROOT / "benchmarks" / "results").glob("finetune_gpu_throughput*.json")):
        payload = json.loads(path.read_text())
        kind = payload.get("rows", "synthetic")
        for r in payload["results"]:
            if "error" not in r:
                panels.setdefault(kind, {}).setdefault(r["variant"], []).append(r)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), dpi=110, squeeze=False)
    for ax, (kind, runs) in zip(axes[0], sorted(panels.items(), key=lambda kv: kv[0] != "synthetic")):
        names = [v for v in order if v in runs]
        base = statistics.median(r["tokens_per_s"] for r in runs["hf"])
        for x, name in enumerate(names):
            rates = [r["tokens_per_s"] for r in runs[name]]
            mid = statistics.median(rates)
            ax.bar(x, mid, color="tab:blue" if name.startswith("unsloth") else
                   "tab:cyan" if name == "notebook" else "tab:gray", alpha=0.8)
            ax.plot([x] * len(rates), rates, "k.", markersize=5)
            ax.text(x, mid * 0.35, f"{mid / base:.2f}x\n{runs[name][0]['peak_allocated_gib']:.1f} GiB",
                    ha="center", color="white", fontsize=8, fontweight="bold")
        ax.axhline(2 * base, color="tab:red", linestyle="--", linewidth=1)
        ax.text(-0.4, 2 * base, "2x the baseline", color="tab:red", ha="left", va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), [labels[n] for n in names], fontsize=8)
        ax.set_ylabel("training tokens/s (non-padding)")
        ax.set_title("synthetic rows filling 2,048 tokens" if kind == "synthetic" else
                     f"real rows ({kind}, about 740 tokens each)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Llama-3.1-8B shape (random weights), LoRA r=16, 2 rows x 4 accumulation, one H200", fontsize=10)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    print(f"wrote {target}")


def unsloth_first() -> None:
    """Unsloth patches transformers, peft and trl as it is imported, so it must be imported before them."""
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("unsloth"):
        import unsloth  # noqa: F401


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--throughput", action="store_true", help="mode (b): Unsloth vs plain TRL at the 8B shape")
    parser.add_argument("--dry-run", action="store_true", help="a tiny model on the CPU, to check the plumbing")
    parser.add_argument("--check-packing", action="store_true", help="mode (c): do rows packed together stay apart?")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--chart", type=Path, help="only draw the throughput results in benchmarks/results here (CPU)")
    recipe_args = parser.add_argument_group("(a) recipe")
    recipe_args.add_argument("--model", help="model folder (e.g. the converted Gemma-3-270M)")
    recipe_args.add_argument("--data", help="medical-o1 rows as .jsonl")
    recipe_args.add_argument("--backend", default="auto", choices=["auto", "unsloth", "hf"])
    recipe_args.add_argument("--max-steps", type=int, default=60)
    recipe_args.add_argument("--eval-rows", type=int, default=50)
    recipe_args.add_argument("--n", type=int, default=5, help="held-out questions to answer, base and tuned")
    recipe_args.add_argument("--max-new-tokens", type=int, default=256)
    recipe_args.add_argument("--workdir", help="where the run's outputs go (default: a temp dir)")
    speed_args = parser.add_argument_group("(b) throughput")
    speed_args.add_argument("--steps", type=int, default=8, help="optimizer steps per variant")
    speed_args.add_argument("--model-dir", default="/root/llama8b-random", help="the random 8B model, built once here")
    speed_args.add_argument("--variants", default="unsloth,hf", help=f"comma-separated: {', '.join(VARIANTS)}, notebook")
    speed_args.add_argument("--rows", help="medical-o1 .jsonl to train on instead of synthetic rows that fill seq")
    args = parser.parse_args()
    if args.chart:
        return chart(args.chart)
    if args.dry_run and args.throughput and args.model_dir == "/root/llama8b-random":
        args.model_dir = tempfile.mkdtemp(prefix="ft-tiny-llama-")
    if args.dry_run:
        args.steps, args.max_steps = min(args.steps, 3), min(args.max_steps, 2)
    if not args.throughput and not args.dry_run and args.backend != "hf":
        unsloth_first()  # this process trains (the throughput variants train in their own processes)
    if args.check_packing:
        payload = {"machine": machine(), **packing_check()}
    else:
        payload = {"machine": machine(), **(throughput(args) if args.throughput else recipe(args))}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
