"""Fine-tuning DeepSeek-R1-Distill (and other causal LMs) on medical chain-of-thought data.

`finetune.prompt` is the one place that builds model text; training and inference both use it.
"""
