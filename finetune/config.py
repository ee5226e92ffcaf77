"""The fine-tuning configuration: typed sections, read from YAML, overridden by `--set section.key=value`.

Defaults are the seeds' recipe (Unsloth notebook for DeepSeek-R1-Distill-Llama-8B on
medical-o1-reasoning-SFT); each says why it is what it is. A YAML file only lists what it changes.
Unknown keys are an error naming the key, because a typo (`lora.rr: 32`) that is silently ignored
trains a different model than the one the user asked for.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"
SEVEN_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class FinetuneError(Exception):
    """An expected failure (bad config, data or model); the message says what to do. No traceback for users."""


@dataclass
class ModelSection:
    name: str = "unsloth/DeepSeek-R1-Distill-Llama-8B"  # a Hub id, a local folder, or `gemma-3-270m` via the CLI
    backend: str = "auto"  # auto: Unsloth when CUDA and unsloth are present, else Transformers + PEFT + TRL ("hf")
    load_in_4bit: bool = True  # QLoRA: an 8B model then fits in ~7 GB of GPU memory; needs CUDA + bitsandbytes
    dtype: str = "auto"  # auto: bf16 where the GPU supports it, fp16 on older GPUs, fp32 on CPU (CPU bf16 is slow)
    max_seq_length: int = 2048  # the seeds' value: all of a 1,204-row medical-o1 sample fits (median ~720 tokens)


@dataclass
class DataSection:
    path: str = "FreedomIntelligence/medical-o1-reasoning-SFT"  # a .json/.jsonl/.csv/.parquet file, or a Hub id
    hub_config: str | None = "en"  # Hub datasets only: the dataset's config (medical-o1 has en, zh, ...)
    split: str = "train"  # Hub datasets only
    question: str = "Question"  # column names: the medical-o1 ones by default
    reasoning: str = "Complex_CoT"
    answer: str = "Response"
    # Grounded-answer rows only: the column holding numbered passages, a list of {number, heading, text}
    # (finetune/reader_data.py writes it as "sources"). They go in the prompt's `### Sources:` block,
    # exactly as the assistant builds it at inference. None: questions without passages.
    sources: str | None = None
    max_rows: int | None = None  # read at most this many rows (after cleaning); None: all
    eval_rows: int = 50  # held out before training for eval loss and `finetune compare`; 0: no eval
    overlong: str = "truncate"  # rows longer than max_seq_length: "truncate" (keep the start, as the seeds) or "drop"


@dataclass
class LoraSection:
    r: int = 16  # the seeds' rank: ~42M trainable parameters on an 8B Llama (0.5%)
    alpha: int = 16  # alpha = r: a scale of 1, so lr means the same when r changes with it
    dropout: float = 0.0  # 0 lets Unsloth use its fused LoRA kernels
    bias: str = "none"  # ditto
    target_modules: list[str] = field(default_factory=lambda: list(SEVEN_PROJECTIONS))  # attention and MLP


@dataclass
class TrainSection:
    batch_size: int = 2  # 2 rows x 4 accumulation = 8 rows per optimizer step (<= 16,384 tokens at 2048)
    grad_accum: int = 4
    max_steps: int = 60  # 60 x 8 = 480 rows: a short demonstration run, as in the seeds
    warmup_steps: int = 5
    learning_rate: float = 2e-4  # the usual LoRA rate; full fine-tuning would use ~10x less
    optimizer: str = "adamw_8bit"  # 8-bit Adam states (bitsandbytes, CUDA); the CPU path falls back to adamw_torch
    weight_decay: float = 0.01
    lr_scheduler: str = "linear"
    seed: int = 3407  # the seeds' seed: data order, LoRA init and the held-out split
    gradient_checkpointing: str = "unsloth"  # "unsloth" (its offloaded variant), "true" (Transformers') or "false"
    completion_only_loss: bool = False  # the seeds learn the whole text; true: only reasoning + answer count
    # true: several rows share each max_seq_length sequence (TRL's best-fit packing), so a step carries
    # about max_seq_length / row length times more rows. Unsloth backend only (see FinetuneRecipe.setup).
    packing: bool = False


@dataclass
class EvalSection:
    every: int = 20  # eval loss on the held-out rows every N optimizer steps (and before the first); 0: never
    batch_size: int = 4
    early_stopping_patience: int = 0  # stop after N evals without improvement and keep the best adapter; 0: off
    early_stopping_min_delta: float = 0.0  # an eval loss must beat the best by more than this to count


@dataclass
class LogSection:
    every: int = 1  # loss, lr, grad norm, tokens/s, memory every N optimizer steps (the seeds log each step)
    wandb: bool = False  # Weights & Biases is opt-in: nothing leaves the machine unless asked
    wandb_project: str = "medassist-finetune"
    wandb_mode: str = "online"  # "offline" writes runs locally for a later `wandb sync`


@dataclass
class OutputSection:
    dir: str = "outputs/medical-o1-r1-llama-8b"
    merged: bool = True  # a merged 16-bit model too (what vLLM / llama.cpp load); the seeds save one
    gguf: str | None = "q8_0"  # convert the merged model with llama.cpp when its converter is found; null: skip


@dataclass
class FinetuneConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    lora: LoraSection = field(default_factory=LoraSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    log: LogSection = field(default_factory=LogSection)
    output: OutputSection = field(default_factory=OutputSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


CHOICES = {
    "model.backend": ("auto", "unsloth", "hf"),
    "model.dtype": ("auto", "bfloat16", "float16", "float32"),
    "data.overlong": ("truncate", "drop"),
    "lora.bias": ("none", "all", "lora_only"),
    "train.gradient_checkpointing": ("unsloth", "true", "false"),
    "log.wandb_mode": ("online", "offline"),
}


def find_config(name: str) -> Path:
    """A YAML path, or the name of a packaged config (`medical_o1_unsloth`, with or without .yaml)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    packaged = CONFIG_DIR / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if packaged.is_file():
        return packaged
    known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise FinetuneError(f"config {name} not found: give a YAML file or one of the packaged configs ({known})")


def load_config(path: str | Path | None = None, overrides: dict[str, object] | None = None) -> FinetuneConfig:
    """Defaults < the YAML file < `overrides` ({"train.max_steps": "10", ...}, e.g. from --set), validated."""
    cfg = FinetuneConfig()
    if path is not None:
        path = find_config(str(path))
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise FinetuneError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(values, dict):
            raise FinetuneError(f"{path}: expected sections (model:, data:, train:, ...), got {type(values).__name__}")
        for section, entries in values.items():
            if not isinstance(entries, dict):
                _section(cfg, section, path)  # unknown section names fail first
                raise FinetuneError(f"{path}: section {section!r} must hold key: value lines")
            for key, value in entries.items():
                set_value(cfg, f"{section}.{key}", value, where=str(path))
    for key, value in (overrides or {}).items():
        set_value(cfg, key, value, where="--set")
    validate(cfg)
    return cfg


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """["train.max_steps=10", ...] -> {"train.max_steps": "10"}."""
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise FinetuneError(f"--set {pair!r}: expected section.key=value, e.g. --set train.max_steps=10")
        parsed[key.strip()] = value.strip()
    return parsed


def _section(cfg: FinetuneConfig, name: str, where: str):
    if name not in {f.name for f in dataclasses.fields(cfg)}:
        known = ", ".join(f.name for f in dataclasses.fields(cfg))
        raise FinetuneError(f"{where}: unknown config section {name!r}; known sections: {known}")
    return getattr(cfg, name)


def set_value(cfg: FinetuneConfig, key: str, value, where: str = "--set") -> None:
    """Set `section.key` from YAML or command-line text, converted to the field's type."""
    section_name, _, name = key.partition(".")
    if not name:
        raise FinetuneError(f"{where}: config key {key!r} needs a section, e.g. train.{key}")
    section = _section(cfg, section_name, where)
    types = typing.get_type_hints(type(section))
    if name not in types:
        known = ", ".join(f"{section_name}.{n}" for n in types)
        raise FinetuneError(f"{where}: unknown config key {key!r}; known keys in {section_name}: {known}")
    setattr(section, name, _convert(key, value, types[name], where))


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _convert(key: str, value, kind, where: str):
    """YAML gives typed values, --set gives text: both end up as the field's type, or a clear error."""
    args = typing.get_args(kind)
    optional = type(None) in args
    if optional:
        if value is None or (isinstance(value, str) and value.strip().lower() in {"null", "none", ""}):
            return None
        kind = next(a for a in args if a is not type(None))
    text = value.strip() if isinstance(value, str) else value
    try:
        if kind is bool:
            if isinstance(text, bool):
                return text
            if str(text).lower() in _TRUE | _FALSE:
                return str(text).lower() in _TRUE
            raise ValueError
        if kind is int:
            if isinstance(text, bool) or (isinstance(text, float) and not text.is_integer()):
                raise ValueError
            return int(text)
        if kind is float:
            if isinstance(text, bool):
                raise ValueError
            return float(text)
        if typing.get_origin(kind) is list:
            if isinstance(text, str):
                text = [part.strip() for part in text.strip("[]").split(",") if part.strip()]
            if not isinstance(text, list) or not all(isinstance(x, str) for x in text):
                raise ValueError
            return text
        if isinstance(text, bool):  # `gradient_checkpointing: true` in YAML is the text "true" here
            return "true" if text else "false"
        if isinstance(text, (dict, list)):
            raise ValueError
        return str(text)
    except (TypeError, ValueError):
        name = getattr(kind, "__name__", str(kind)).replace("list", "list of names")
        raise FinetuneError(f"{where}: {key} must be {name}{' or null' if optional else ''}, got {value!r}") from None


def validate(cfg: FinetuneConfig) -> None:
    """Checks that need no libraries, so a bad config fails in a second, not after loading an 8B model."""
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise FinetuneError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")
    positive = {"model.max_seq_length": cfg.model.max_seq_length, "lora.r": cfg.lora.r, "lora.alpha": cfg.lora.alpha,
                "train.batch_size": cfg.train.batch_size, "train.grad_accum": cfg.train.grad_accum,
                "train.max_steps": cfg.train.max_steps, "train.learning_rate": cfg.train.learning_rate,
                "eval.batch_size": cfg.eval.batch_size, "log.every": cfg.log.every}
    for key, value in positive.items():
        if value <= 0:
            raise FinetuneError(f"{key} must be positive, got {value}")
    non_negative = {"data.eval_rows": cfg.data.eval_rows, "eval.every": cfg.eval.every,
                    "train.warmup_steps": cfg.train.warmup_steps, "train.weight_decay": cfg.train.weight_decay,
                    "eval.early_stopping_patience": cfg.eval.early_stopping_patience}
    for key, value in non_negative.items():
        if value < 0:
            raise FinetuneError(f"{key} must be 0 or more, got {value}")
    if not 0 <= cfg.lora.dropout < 1:
        raise FinetuneError(f"lora.dropout must be in [0, 1), got {cfg.lora.dropout}")
    if not cfg.lora.target_modules:
        raise FinetuneError("lora.target_modules is empty: name the projections to adapt, e.g. q_proj,v_proj")
    if cfg.data.max_rows is not None and cfg.data.max_rows <= cfg.data.eval_rows:
        raise FinetuneError(f"data.max_rows ({cfg.data.max_rows}) leaves no training rows after "
                            f"data.eval_rows ({cfg.data.eval_rows}) are held out: raise max_rows or lower eval_rows")
    if cfg.eval.early_stopping_patience and not (cfg.eval.every and cfg.data.eval_rows):
        raise FinetuneError("eval.early_stopping_patience needs eval loss: set eval.every and data.eval_rows above 0")
    if cfg.output.gguf and not cfg.output.merged:
        raise FinetuneError("output.gguf converts the merged model: set output.merged=true, or output.gguf=null")
    if not cfg.output.dir:
        raise FinetuneError("output.dir is empty: give --output DIR")
