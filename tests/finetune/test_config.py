"""Fine-tuning configs: the packaged YAMLs, overrides, and bad keys that fail with a message naming them."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from assistant.cli import main
from finetune.config import CONFIG_DIR, FinetuneError, load_config, parse_overrides


def test_the_packaged_seed_config_is_the_seeds_recipe():
    cfg = load_config("medical_o1_unsloth")
    assert cfg.model.name == "unsloth/DeepSeek-R1-Distill-Llama-8B"
    assert (cfg.model.load_in_4bit, cfg.model.max_seq_length, cfg.model.backend) == (True, 2048, "auto")
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.bias) == (16, 16, 0.0, "none")
    assert cfg.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    t = cfg.train
    assert (t.batch_size, t.grad_accum, t.warmup_steps, t.max_steps) == (2, 4, 5, 60)
    assert (t.learning_rate, t.optimizer, t.weight_decay, t.lr_scheduler, t.seed) == (2e-4, "adamw_8bit", 0.01,
                                                                                        "linear", 3407)
    assert t.gradient_checkpointing == "unsloth"
    assert (cfg.data.question, cfg.data.reasoning, cfg.data.answer) == ("Question", "Complex_CoT", "Response")
    assert cfg.log.wandb is False and cfg.output.merged is True


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_packaged_config_loads_and_shows_how_to_launch_it(path):
    load_config(path)
    header = path.read_text().split("\n\n")[0]
    assert f"medassist finetune train --config {path.stem}" in header
    assert "--set" in path.read_text().split("model:")[0]


def test_overrides_are_converted_to_the_field_types():
    cfg = load_config("medical_o1_unsloth", parse_overrides(
        ["lora.r=32", "train.learning_rate=1e-4", "model.load_in_4bit=false", "data.max_rows=null",
         "lora.target_modules=q_proj,v_proj", "output.gguf=none"]))
    assert (cfg.lora.r, cfg.train.learning_rate, cfg.model.load_in_4bit) == (32, 1e-4, False)
    assert cfg.data.max_rows is None and cfg.output.gguf is None
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config("gemma3_270m_cpu", {"lora.r": "8", "data.path": "rows.csv"})
    saved = tmp_path / "config.yaml"
    saved.write_text(cfg.to_yaml())
    assert load_config(saved) == cfg


@pytest.mark.parametrize("override, named", [
    ({"lora.rr": "32"}, "'lora.rr'"),
    ({"trian.max_steps": "3"}, "'trian'"),
    ({"max_steps": "3"}, "'max_steps'"),
    ({"train.max_steps": "three"}, "train.max_steps must be int"),
    ({"data.overlong": "cut"}, "data.overlong must be one of truncate, drop"),
    ({"train.max_steps": "0"}, "train.max_steps must be positive"),
])
def test_bad_overrides_name_the_key(override, named):
    with pytest.raises(FinetuneError) as caught:
        load_config("medical_o1_unsloth", override)
    assert named in str(caught.value)


def test_unknown_key_in_a_yaml_file_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  name: x\nlora:\n  rank: 8\n")
    with pytest.raises(FinetuneError) as caught:
        load_config(path)
    assert "'lora.rank'" in str(caught.value) and str(path) in str(caught.value)
    assert "lora.r" in str(caught.value)  # the known keys are listed, so the fix is obvious


def test_cli_reports_a_bad_key_in_one_line_without_a_traceback(tmp_path):
    result = CliRunner().invoke(main, ["finetune", "train", "--config", "gemma3_270m_cpu", "--set", "lora.rr=32",
                                       "--output", str(tmp_path / "out")])
    assert result.exit_code == 3
    assert "unknown config key 'lora.rr'" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert not (tmp_path / "out").exists()  # nothing was started


def test_cli_reports_a_missing_config_and_a_malformed_set():
    missing = CliRunner().invoke(main, ["finetune", "train", "--config", "no_such_config"])
    assert missing.exit_code == 3 and "gemma3_270m_cpu" in missing.stderr  # lists the packaged ones
    malformed = CliRunner().invoke(main, ["finetune", "train", "--config", "gemma3_270m_cpu", "--set", "lora.r"])
    assert malformed.exit_code == 3 and "section.key=value" in malformed.stderr
