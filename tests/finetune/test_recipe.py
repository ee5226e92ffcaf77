"""The fine-tuning recipe on a tiny random Llama: real TRL SFTTrainer and PEFT, a step in a fraction of a second."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from assistant.cli import main
from finetune.config import load_config
from finetune.metrics import read_metrics
from finetune.prompt import build_training_text
from finetune.recipe import FinetuneRecipe

# Four rows to memorise (made of the tiny tokenizer's words, so they are short) and one to hold out.
ROWS = [{"Question": q, "Complex_CoT": c, "Response": a} for q, c, a in [
    ("first line treatment for high blood pressure", "The patient has hypertension.", "a thiazide diuretic"),
    ("first line treatment for type 2 diabetes", "Check kidney function.", "metformin 500 mg twice daily"),
    ("Fever cough chest pain", "The patient is a 54 year old man.", "pneumonia"),
    ("treatment for asthma", "first line", "an inhaler"),
    ("held out question about lisinopril", "ACE inhibitor", "check kidney function")]]


def write_rows(path, rows=ROWS):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_config(tiny_model, data, out, **overrides):
    """The CPU config pointed at the tiny model: 2 rows a step, a learning rate a random model can feel in 30 steps."""
    values = {"model.name": str(tiny_model), "data.path": str(data), "output.dir": str(out), "data.eval_rows": "1",
              "train.batch_size": "2", "train.grad_accum": "1", "train.warmup_steps": "0", "train.max_steps": "30",
              "train.learning_rate": "1e-2", "eval.every": "10", "eval.batch_size": "1", "output.gguf": "null"}
    return load_config("gemma3_270m_cpu", {**values, **{k.replace("__", "."): str(v) for k, v in overrides.items()}})


def logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits.float()


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """A 30-step run on the memorisable rows, with the logits of the trained model before it was saved."""
    tmp = tmp_path_factory.mktemp("trained")
    data = write_rows(tmp / "rows.jsonl")
    lines = []
    recipe = FinetuneRecipe(tiny_config(tiny_model, data, tmp / "run"), say=lines.append)
    recipe.setup()
    result = recipe.train()
    first = ROWS[0]
    text = build_training_text(first["Question"], first["Complex_CoT"], first["Response"], recipe.tokenizer.eos_token)
    probe = recipe.tokenizer(text, return_tensors="pt")["input_ids"]
    trained_logits = logits(recipe.model, probe)
    with recipe.model.disable_adapter():
        base_logits = logits(recipe.model, probe)
    recipe.save()
    recipe.cleanup()
    return SimpleNamespace(out=tmp / "run", data=data, result=result, probe=probe, lines=lines,
                           trained_logits=trained_logits, base_logits=base_logits)


def test_two_step_run_through_the_cli_logs_finite_metrics_and_writes_every_output(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/llama.cpp: the GGUF step must explain itself
    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    data, out = write_rows(tmp_path / "rows.jsonl"), tmp_path / "run"
    args = ["finetune", "train", "--config", "gemma3_270m_cpu", "--model", str(tiny_model), "--data", str(data),
            "--output", str(out), "--max-steps", "2", "--max-seq-length", "256", "--set", "data.eval_rows=1",
            "--set", "eval.every=1", "--set", "train.grad_accum=1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + result.stderr

    records = read_metrics(out / "metrics.jsonl")
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [1, 2]
    for r in train:
        assert math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) and r["lr"] is not None
        assert r["tokens_per_s"] > 0 and r["peak_mem_gib"] > 0
    assert [r["step"] for r in records if "eval_loss" in r] == [0, 1, 2]
    assert re.search(r"step\s+2\s+loss \d+\.\d+\s+lr", result.stdout)  # the same metrics on stdout

    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "merged" / "config.json").is_file()
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_config(out / "config.yaml").train.max_steps == 2  # the resolved config, reusable as is
    assert json.loads((out / "data_report.json").read_text())["train"] == 4
    card = (out / "README.md").read_text()
    assert f"base_model: {tiny_model}" in card and "eval loss before training" in card and str(data) in card
    assert "GGUF export skipped" in result.stdout and "convert_hf_to_gguf.py" in result.stdout
    assert "Smoke check: greedy generation on 1 held-out prompts" in result.stdout and "## Smoke check" in card

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 3 and "already holds a fine-tuned adapter" in again.stderr


def test_packing_is_refused_where_packed_rows_would_attend_to_each_other(tiny_model, tmp_path):
    args = ["finetune", "train", "--config", "gemma3_270m_cpu", "--model", str(tiny_model),
            "--data", str(write_rows(tmp_path / "rows.jsonl")), "--output", str(tmp_path / "run"),
            "--backend", "hf", "--set", "train.packing=true"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3
    assert "train.packing needs the unsloth backend" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_loss_falls_over_30_steps_on_memorisable_rows(trained):
    losses = [r["loss"] for r in read_metrics(trained.out / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    assert trained.result.steps == 30 and trained.result.tokens_per_s > 0


def test_reloading_the_adapter_reproduces_the_trained_logits(trained, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), trained.out / "adapter")
    torch.testing.assert_close(logits(reloaded, trained.probe), trained.trained_logits, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(trained.trained_logits, trained.base_logits, atol=1e-2)  # training changed the model


def test_merged_model_matches_the_adapter(trained):
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(trained.out / "merged")
    torch.testing.assert_close(logits(merged, trained.probe), trained.trained_logits, rtol=1e-4, atol=1e-3)


def test_compare_shows_base_and_tuned_answers_and_both_losses(trained):
    target = trained.out / "compare.md"
    result = CliRunner().invoke(main, ["finetune", "compare", "--adapter", str(trained.out / "adapter"),
                                       "--data", str(trained.data), "--n", "2", "--max-new-tokens", "6"])
    assert result.exit_code == 0, result.output + result.stderr
    text = target.read_text()
    assert "## 1. first line treatment for high blood pressure" in text and "## 2." in text and "## 3." not in text
    assert text.count("| reasoning |") == 2 and "**Reference answer:** a thiazide diuretic" in text
    base, tuned = map(float, re.search(r"eval loss on these rows \(nats/token\) \| ([\d.]+) \| ([\d.]+) \|", text).groups())
    assert tuned < base / 2  # these rows were memorised


def test_smoke_check_after_training_is_in_the_metrics_and_the_model_card_and_warns_when_nothing_stops(trained):
    smoke, = [r["smoke_check"] for r in read_metrics(trained.out / "metrics.jsonl") if "smoke_check" in r]
    assert smoke["prompts"] == 1  # the one held-out row
    assert 0 <= smoke["closed_think"] <= 1 and 0 <= smoke["stopped"] <= 1
    assert 0 < smoke["mean_tokens"] <= smoke["max_tokens"] <= smoke["max_new_tokens"] == 2 * smoke["longest_target"]
    assert json.loads((trained.out / "train_result.json").read_text())["smoke_check"] == smoke

    card = (trained.out / "README.md").read_text()
    assert card.index("## Results") < card.index("## Smoke check") < card.index("## Use")
    shares = [float(x) for x in re.findall(r"^\| (?:closed `</think>`|stopped with EOS) \| ([\d.]+) \(", card, re.M)]
    assert shares == [pytest.approx(smoke["closed_think"], abs=0.005), pytest.approx(smoke["stopped"], abs=0.005)]
    assert all(0 <= x <= 1 for x in shares)
    # The tiny model suppresses its EOS (tests/tiny_model.py): it never stops, and the run says so, loudly.
    assert smoke["stopped"] == 0 and smoke["max_tokens"] == smoke["max_new_tokens"]
    warning = "WARNING: the tuned model never stopped on 1 held-out prompts: "
    assert any(warning in line for line in trained.lines) and f"> **{warning}" in card


def test_early_stopping_stops_and_keeps_the_best_adapter(tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    # No eval can beat the best by 1e9: the first eval (step 0, the untrained adapter) stays the best one.
    cfg = tiny_config(tiny_model, write_rows(tmp_path / "rows.jsonl"), tmp_path / "run", eval__every=2,
                      eval__early_stopping_patience=1, eval__early_stopping_min_delta=1e9, output__merged="false")
    recipe = FinetuneRecipe(cfg, say=lambda line: None)
    recipe.setup()
    result = recipe.train()
    recipe.save()
    assert result.stopped_early and result.steps == 2 and result.restored_step == 0
    assert max(r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")) == 2
    probe = torch.tensor([[1, 20, 30, 40]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    kept = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "run" / "adapter")
    torch.testing.assert_close(logits(kept, probe), logits(base, probe))
    assert "(stopped early)" in (tmp_path / "run" / "README.md").read_text()


def test_completion_only_loss_scores_just_the_reasoning_and_answer(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    from finetune.evaluate import eval_loss

    cfg = tiny_config(tiny_model, write_rows(tmp_path / "rows.jsonl"), tmp_path / "run", data__eval_rows=2,
                      eval__batch_size=2, eval__every=1, train__max_steps=1, train__completion_only_loss="true")
    recipe = FinetuneRecipe(cfg, say=lambda line: None)
    recipe.setup()
    recipe.train()
    trainer_base_loss = recipe.result.eval_losses[0][1]  # step 0: the adapter is still a no-op
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    ours = eval_loss(base, recipe.tokenizer, recipe.eval_rows, batch_size=2, completion_only=True)
    everything = eval_loss(base, recipe.tokenizer, recipe.eval_rows, batch_size=2, completion_only=False)
    assert trainer_base_loss == pytest.approx(ours, rel=1e-4)
    assert abs(ours - everything) > 1e-3
