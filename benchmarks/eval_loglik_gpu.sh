#!/usr/bin/env bash
# Issue 14 on the lent GPU, in one call: multiple-choice accuracy by log-likelihood (`eval mcq --scoring loglik`)
# of the base model and each adapter, without and with retrieval, on all of MIRAGE and MedQA
# (benchmarks/eval_gpu.py), then the cross-check against lm-evaluation-harness on the MedQA questions
# (benchmarks/lmeval_crosscheck.py) in float32 and in bfloat16. Results come back in $OUT.
#
# Run it in the call after the Gemma-3-270M GGUF parts were carried to /root/parts (../shared/GPU.md), carrying:
#   .gpu/whl                gguf (the conversion), lm-eval 0.4.13, datasets 4.8.5, dill 0.4.0, multiprocess 0.70.18:
#                           pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .gpu/whl
#   .gpu/data               copies of ../shared/data/mirage_benchmark.jsonl and medqa_usmle_4opt_test.jsonl
#   .gpu/retrieved.jsonl.gz every question's passages: benchmarks/eval_gpu.py --retrieve (no Chroma on the machine)
#   .gpu/tokenizer.tar.gz   tokenizer.json + tokenizer_config.json of the CPU's converted model: a tokenizer built
#                           from the GGUF on the GPU machine once gave other ids (GPU.md); checked below
#   .gpu/site.tar.gz        GPU.md's bundle, unpacked to /root/site and put on PYTHONPATH: the project's imports
#                           need packages the machine lacks (platformdirs, ...)
# then: bash benchmarks/eval_loglik_gpu.sh [limit per file, for a smoke run] (ADAPTERS="--adapter NAME=DIR ..." to
# change the adapters; the reader adapter by default; RETRIEVAL=off|only for one half; CROSSCHECK= to skip it).
# The 2026-12-02 runs (docs/benchmarks.md), each after the five part calls, the first also carrying the tokenizer:
#   tar xzf .gpu/site.tar.gz -C /root/site && export PYTHONPATH=/root/site && RETRIEVAL=off bash benchmarks/eval_loglik_gpu.sh
#   ... RETRIEVAL=only CROSSCHECK=float32 bash benchmarks/eval_loglik_gpu.sh   (with .gpu/retrieved.jsonl.gz)
set -euo pipefail
limit=${1:-}
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TQDM_DISABLE=1 PYTHONUNBUFFERED=1
model=${MODEL:-/root/gemma-3-270m}
python3 -c "import lm_eval" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
  .gpu/whl/*.whl 2>&1 | tail -2
if [ ! -f "$model/config.json" ]; then
  [ -f /root/gemma-3-270m.gguf ] || cat /root/parts/model.part* > /root/gemma-3-270m.gguf
  sha256sum /root/gemma-3-270m.gguf  # a5fd3b62...6818 (model-chunks.sh)
  python3 -c "from pathlib import Path; from assistant.backends.gguf_convert import convert_gguf; \
convert_gguf(Path('/root/gemma-3-270m.gguf'), Path('$model'), print)"
  tar xzf .gpu/tokenizer.tar.gz -C "$model"
fi
python3 -c "import json, sys; from transformers import AutoTokenizer; t = AutoTokenizer.from_pretrained('$model'); \
ids = t('### Question:\nDose? <think>')['input_ids']; want = [2, 10354, 19566, 236787, 107, 236796, 888, 236881, 655, 36345, 236813]; \
print('tokenizer ids', ids[:6], 'equal to the CPU' if ids == want else 'DIFFER FROM THE CPU'); sys.exit(ids != want)"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no GPU: $(nproc) CPUs"

data=${DATA:-.gpu/data/mirage_benchmark.jsonl .gpu/data/medqa_usmle_4opt_test.jsonl}
medqa=${data##* }  # the last file: MedQA, for the cross-check
# shellcheck disable=SC2086  # word splitting of $data and $ADAPTERS is meant
python3 benchmarks/eval_gpu.py --scoring loglik --model "$model" ${ADAPTERS:---adapter reader=assistant/adapters/gemma3-270m-reader} \
  --retrieved "${RETRIEVED:-.gpu/retrieved.jsonl.gz}" --data $data --out "$OUT" --batch-size "${BATCH:-64}" \
  --home /tmp/medassist-home --retrieval "${RETRIEVAL:-both}" ${limit:+--limit $limit} 2>&1 | grep --line-buffered -v "it/s]" || echo "evaluation failed"
# lm-eval is optional: a failure here keeps the results above. Batch 16 in float32: lm-eval's log-softmax over
# 64 rows x 262,144 tokens of vocabulary in float32 did not fit beside the model (33 GiB more).
for dtype in ${CROSSCHECK-float32 bfloat16}; do
  timeout 300 python3 benchmarks/lmeval_crosscheck.py --model "$model" --data "$medqa" \
    --limit "${limit:-891}" --batch-size "$([ $dtype = float32 ] && echo 16 || echo 64)" --dtype $dtype --out "$OUT/lmeval_crosscheck_gpu_$dtype.json" 2>&1 \
    | grep --line-buffered -v "it/s]" | tail -8 || echo "cross-check ($dtype) failed"
done
