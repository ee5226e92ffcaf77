#!/usr/bin/env bash
# Trains the grounded reader (finetune/configs/gemma3_270m_reader.yaml) with `medassist finetune train` on
# the lent GPU machine, in the call after the model's GGUF parts were carried to /root/parts (../shared/GPU.md).
# Carry .gpu/site.tar.gz (make-bundle.sh), .gpu/reader-data (`medassist finetune reader-data --out
# .gpu/reader-data`) and .gpu/expected_ids.json, then, from the repository root there:
#   bash benchmarks/reader_gpu.sh [max_steps [finetune train options]]        # the adapter and run files come back in $OUT/reader.tgz
# READER_DATA names another folder of rows (default .gpu/reader-data), e.g. .gpu/reader-focus from
# `medassist eval reader-rows --in .gpu/reader-data --out .gpu/reader-focus` (the rows as the agent shows them).
# expected_ids.json holds the CPU tokenizer's ids for a short text; the tokenizer built on the GPU must give
# the same, <bos> first (../shared/GPU.md says why). Write it on the CPU with:
#   .venv/bin/python -c 'import json,sys; from transformers import AutoTokenizer; \
#     t = AutoTokenizer.from_pretrained(sys.argv[1]); print(json.dumps(t("### Question:\nDose? <think>")["input_ids"]))' \
#     ~/.local/share/medassist/models/gemma-3-270m > .gpu/expected_ids.json
set -euo pipefail
steps=${1:-300}; shift || true  # the rest of the arguments go to `finetune train` (e.g. --backend hf)
data=${READER_DATA:-.gpu/reader-data}
mkdir -p /root/site && tar xzf .gpu/site.tar.gz -C /root/site
export PYTHONPATH=/root/site:$PWD HF_HUB_OFFLINE=1 TQDM_DISABLE=1 PYTHONUNBUFFERED=1
[ -f /root/gemma-3-270m.gguf ] || cat /root/parts/model.part* > /root/gemma-3-270m.gguf
sha256sum /root/gemma-3-270m.gguf  # a5fd3b62...6818 (model-chunks.sh)
[ -d /root/gemma-3-270m ] || python3 -c "from pathlib import Path; from assistant.backends.gguf_convert import \
convert_gguf; convert_gguf(Path('/root/gemma-3-270m.gguf'), Path('/root/gemma-3-270m'), print)"
python3 -c "import json; from transformers import AutoTokenizer; t = AutoTokenizer.from_pretrained('/root/gemma-3-270m'); \
ids = t('### Question:\nDose? <think>')['input_ids']; want = json.load(open('.gpu/expected_ids.json')); \
print('tokenizer ids', ids[:8], 'equal to the CPU' if ids == want else 'DIFFER FROM THE CPU', want[:8]); \
assert ids == want and ids[0] == 2"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "from finetune.cli import finetune; finetune()" train --config gemma3_270m_reader \
  --model /root/gemma-3-270m --data "$data/train.jsonl" --output "/root/reader-$steps" --max-steps "$steps" \
  --set output.merged=false --set output.gguf=null "$@"
tar czf "$OUT/reader.tgz" -C "/root/reader-$steps" --exclude='adapter/tokenizer*' .
ls -la "/root/reader-$steps/adapter"
