"""Two training steps on the real Gemma-3-270M (the packaged model, converted once per test run)."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from assistant.cli import main
from finetune.metrics import read_metrics

ROWS = [{"Question": q, "Complex_CoT": c, "Response": a} for q, c, a in [
    ("What is the first-line drug for type 2 diabetes?", "Metformin lowers hepatic glucose output.", "Metformin."),
    ("Which electrolyte do thiazides lower?", "Thiazides increase sodium and potassium loss.", "Potassium."),
    ("What is the antidote to paracetamol overdose?", "It replenishes glutathione.", "Acetylcysteine."),
    ("Which vitamin deficiency causes scurvy?", "Collagen synthesis needs it.", "Vitamin C."),
    ("What does a raised troponin suggest?", "Troponin is released by injured myocardium.", "Myocardial injury."),
    ("First-line treatment of anaphylaxis?", "It reverses vasodilation and bronchospasm.", "IM adrenaline.")]]


@pytest.mark.slow
def test_two_steps_on_the_packaged_gemma_by_its_alias(gemma_models, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "models").symlink_to(gemma_models)  # the converted model, shared by the whole test run
    monkeypatch.setenv("MEDASSIST_HOME", str(home))
    data, out = tmp_path / "rows.jsonl", tmp_path / "run"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    result = CliRunner().invoke(main, [
        "finetune", "train", "--config", "gemma3_270m_cpu", "--model", "gemma-3-270m", "--data", str(data),
        "--output", str(out), "--max-steps", "2", "--max-seq-length", "160", "--set", "data.eval_rows=2",
        "--set", "eval.every=0", "--set", "train.batch_size=2", "--set", "train.grad_accum=1",
        "--set", "output.merged=false", "--set", "output.gguf=null"])
    assert result.exit_code == 0, result.output + result.stderr

    train = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert len(train) == 2 and all(math.isfinite(r["loss"]) and r["tokens_per_s"] > 0 for r in train)
    # A pretrained model with a working tokenizer predicts this text far better than chance (ln 262144 = 12.5).
    assert train[0]["loss"] < 6, train
    assert (out / "adapter" / "adapter_config.json").is_file()
    summary = json.loads((out / "train_result.json").read_text())
    print(f"Gemma-3-270M, 2 steps of 2 rows: losses {[round(r['loss'], 3) for r in train]}, "
          f"{summary['tokens_per_s']:.0f} tokens/s, peak {summary['peak_mem_gib']:.2f} GiB")
