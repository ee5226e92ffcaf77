"""Prefill and decode speed of the default model per backend and dtype, in one run: transformers in fp32 and
bf16 (and what compute_dtype "auto" picks), and llama.cpp (its GGUF's own q4_k_m weights) for reference.

A 1,000-token prompt (MedQuAD answers, counted with the Gemma tokenizer) is run through each variant in turn,
--repeats times, interleaved so that a busy neighbour slows all alike. Per variant: time to the first token
(prefill + the first step: what a user waits before text appears) and decode tokens/s (greedy, EOS ignored,
--decode tokens after the first). Ratios are against transformers fp32, the default before issue 13. The
CPU's flags that decide bf16 and the load average go into the JSON.

    .venv/bin/python benchmarks/prefill_decode.py                     # ~5 min on 2 idle cores
    .venv/bin/python benchmarks/prefill_decode.py --repeats 1 --decode 16
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import DATA, OtherLoad, machine, machine_line, read_jsonl, save, summary, table, warn_if_busy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--prompt-tokens", type=int, default=1000)
parser.add_argument("--decode", type=int, default=32, help="tokens decoded after the first")
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--no-llamacpp", action="store_true")
parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores; llama.cpp always uses all)")
parser.add_argument("--home", type=Path, default=None, help="a home with the converted model (default: a temporary one)")
args = parser.parse_args()

import torch  # noqa: E402

if args.threads:  # one thread per variant is less hurt by a busy neighbour than two that wait for each other
    torch.set_num_threads(args.threads)

from assistant.backends import load_backend  # noqa: E402
from index.compute import bf16_matmul_flags, choose_compute, cpu_flags  # noqa: E402

info = {**machine(), "cpu_bf16_matmul_flags": bf16_matmul_flags(cpu_flags()),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "auto_picks": choose_compute("auto").__dict__}
print(machine_line(info))
warn_if_busy(info)
home = args.home or Path(tempfile.mkdtemp(prefix="medassist-prefill-"))


class TransformersVariant:
    def __init__(self, dtype: str):
        self.backend = load_backend("transformers", home=home, compute_dtype=dtype)
        self.model, self.tokenizer = self.backend.model, self.backend.tokenizer

    def ids(self, text: str):
        return self.tokenizer(text, return_tensors="pt")["input_ids"][:, :args.prompt_tokens].to(self.model.device)

    def run(self, ids, new_tokens: int) -> float:
        began = time.perf_counter()
        with torch.inference_mode():
            self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens, do_sample=False)
        if ids.is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - began


class LlamaCppVariant:
    def __init__(self):
        self.llm = load_backend("llamacpp", home=home).llm

    def ids(self, text: str):
        return self.llm.tokenize(text.encode("utf-8"))[:args.prompt_tokens]

    def run(self, ids, new_tokens: int) -> float:
        began = time.perf_counter()
        self.llm.reset()
        self.llm.eval(ids)
        for _ in range(new_tokens):
            self.llm.eval([self.llm.sample(temp=0.0)])  # greedy; EOS is fed back like any token
        return time.perf_counter() - began


text = " ".join(row["answer"] for row in read_jsonl(DATA / "medquad_qa_corpus.jsonl", 60))
variants = {"transformers fp32": TransformersVariant("float32"), "transformers bf16": TransformersVariant("bfloat16")}
if not args.no_llamacpp:
    variants["llama.cpp q4_k_m"] = LlamaCppVariant()
prompts = {name: variant.ids(text) for name, variant in variants.items()}
for name, variant in variants.items():  # warm-up: first calls allocate and pick kernels
    variant.run(prompts[name], 2)

first_token = {name: [] for name in variants}
decode = {name: [] for name in variants}
other = []
for repeat in range(args.repeats):
    for name, variant in variants.items():
        with OtherLoad() as load:
            first = variant.run(prompts[name], 1)
            full = variant.run(prompts[name], 1 + args.decode)
        first_token[name].append(first)
        decode[name].append(args.decode / max(full - first, 1e-9))
        other.append(round(load.share, 3))
        print(f"  repeat {repeat + 1} {name}: first token {first:.2f} s, decode {decode[name][-1]:.1f} tok/s "
              f"(other processes {load.share:.0%} of the CPUs)", flush=True)

results = {name: {"prompt_tokens": int(len(prompts[name][0]) if hasattr(prompts[name], "shape") else len(prompts[name])),
                  "first_token_s": summary(first_token[name]), "decode_tok_s": summary(decode[name])}
           for name in variants}
base = results["transformers fp32"]
for result in results.values():
    result["first_token_speedup_vs_fp32"] = round(base["first_token_s"]["median"] / result["first_token_s"]["median"], 2)
    result["decode_speedup_vs_fp32"] = round(result["decode_tok_s"]["median"] / base["decode_tok_s"]["median"], 2)
print(f"\nPrefill and decode, {args.prompt_tokens}-token prompt, {args.decode} decoded tokens, {args.repeats} "
      f"interleaved repeats (median; min-max)")
print(machine_line(info))
print(f"auto picks: {info['auto_picks']['dtype']} ({info['auto_picks']['why']})")
print(table(["variant", "first token s", "x vs fp32", "decode tok/s", "x vs fp32"],
            [[name, f"{r['first_token_s']['median']:.2f}; {r['first_token_s']['min']:.2f}-{r['first_token_s']['max']:.2f}",
              r["first_token_speedup_vs_fp32"],
              f"{r['decode_tok_s']['median']:.1f}; {r['decode_tok_s']['min']:.1f}-{r['decode_tok_s']['max']:.1f}",
              r["decode_speedup_vs_fp32"]] for name, r in results.items()]))
print("other processes' CPU share per timed variant: " + ", ".join(f"{x:.0%}" for x in other))
save("prefill_decode", {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "variants": results,
                        "other_cpu_per_step": other})
if "llama.cpp q4_k_m" in variants:
    variants["llama.cpp q4_k_m"].llm.close()  # now: left to interpreter shutdown, llama.cpp's __del__ fails noisily
