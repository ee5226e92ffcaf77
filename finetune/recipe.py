"""LoRA supervised fine-tuning of a causal LM on medical chain-of-thought rows.

    recipe = FinetuneRecipe(load_config("medical_o1_unsloth"))
    recipe.setup()    # output dir, backend, model + LoRA, data, trainer: every check runs before training
    recipe.train()    # TRL SFTTrainer; metrics every log.every steps to metrics.jsonl and stdout
    recipe.save()     # adapter, merged model, GGUF, loss curve, smoke check, model card
    recipe.cleanup()

Two backends build the same model: Unsloth (CUDA: 4-bit QLoRA, its kernels and gradient
checkpointing) and Transformers + PEFT (anywhere; no 4-bit without CUDA). Both train with TRL's
SFTTrainer on rows tokenized by finetune.data from finetune.prompt's one format.

Model names are folders or Hub ids. Aliases such as the packaged Gemma-3-270M are resolved to a
folder by the command line (assistant's model cache), because finetune imports nothing of ours.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from finetune.config import FinetuneConfig, FinetuneError
from finetune.data import DataReport, Example, clean, read_rows, split, tokenize, write_jsonl

Say = Callable[[str], None]


@dataclass
class TrainResult:
    backend: str
    device: str
    precision: str
    optimizer: str
    quantized: bool
    steps: int = 0
    train_loss: float | None = None  # the last logged one
    eval_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss), the first before training
    tokens_per_s: float = 0.0
    runtime_s: float = 0.0
    peak_mem_gib: float = 0.0
    stopped_early: bool = False
    restored_step: int | None = None  # early stopping put back the adapter of this step
    smoke_check: dict | None = None  # finetune.evaluate.SmokeCheck's numbers, filled in by save()


def sft_trainer_class(logger):
    """TRL's SFTTrainer, with the model's own loss where TRL's loss kernel cannot run, counting tokens for `logger`.

    TRL 1.15 computes the SFT loss with a Triton kernel (a fused LM head that never builds the full
    logits). Triton needs a CUDA GPU, so on a CPU the loss comes from Transformers' Trainer instead:
    full logits and the model's cross-entropy, the same number. Tokens are counted here, not read from
    TRL's logs: under Unsloth (which replaces SFTTrainer) those logs carry no token count.
    """
    from transformers import Trainer
    from trl import SFTTrainer

    has_triton = importlib.util.find_spec("triton") is not None

    class SFTTrainerAnyDevice(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:  # non-padding tokens; padding-free batches (Unsloth) have no mask and no padding
                mask = inputs.get("attention_mask")
                # a tensor sum, read at log time: int() here would make the CPU wait for the GPU every micro-batch
                logger.tokens_seen += mask.sum() if mask is not None else inputs["input_ids"].numel()
            if has_triton and inputs["input_ids"].is_cuda:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return SFTTrainerAnyDevice


def choose_backend(requested: str) -> str:
    """auto: Unsloth when a CUDA GPU and the unsloth package are both there, else Transformers + PEFT ("hf")."""
    import torch

    cuda = torch.cuda.is_available()
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if requested == "auto":
        return "unsloth" if cuda and has_unsloth else "hf"
    if requested == "unsloth" and not cuda:
        raise FinetuneError("backend unsloth needs a CUDA GPU (unsloth cannot even be imported without one); "
                            "use --backend hf (or auto) on this machine")
    if requested == "unsloth" and not has_unsloth:
        raise FinetuneError("backend unsloth is not installed: pip install 'medassist[gpu]', or use --backend hf")
    return requested


class FinetuneRecipe:
    def __init__(self, cfg: FinetuneConfig, say: Say = print):
        self.cfg, self.say = cfg, say
        self.output_dir = Path(cfg.output.dir).expanduser()
        self.model = self.tokenizer = self.trainer = self.logger = None
        self.result: TrainResult | None = None

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        self.backend = choose_backend(self.cfg.model.backend)
        if self.cfg.train.packing and self.backend != "unsloth":
            # Packed rows must not see each other. Unsloth's attention splits the sequence at the rows'
            # boundaries; Transformers' SDPA and eager attention do not (benchmarks/finetune_gpu.py
            # --check-packing), so on this backend packing would corrupt training.
            raise FinetuneError("train.packing needs the unsloth backend (a CUDA GPU with unsloth): with the hf "
                                "backend, rows packed into one sequence would attend to each other; "
                                "set train.packing=false")
        self._setup_output_dir()
        self._setup_precision()
        self.model, self.tokenizer = self._setup_model()
        self.train_rows, self.eval_rows, self.heldout, self.report = self._setup_data()
        self.trainer = self._setup_trainer()

    def _setup_output_dir(self) -> None:
        if (self.output_dir / "adapter").exists():
            raise FinetuneError(f"{self.output_dir} already holds a fine-tuned adapter: choose another --output, "
                                "or delete that folder first")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "config.yaml").write_text(self.cfg.to_yaml(), encoding="utf-8")  # before anything can fail
        (self.output_dir / "metrics.jsonl").unlink(missing_ok=True)

    def _setup_precision(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        if self.cfg.model.dtype != "auto":
            self.dtype = getattr(torch, self.cfg.model.dtype)
        elif self.cuda:
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self.dtype = torch.float32  # bf16 matmuls are slower than fp32 on CPUs without AMX
        self.quantized = self.cfg.model.load_in_4bit and self.cuda and (
            self.backend == "unsloth" or importlib.util.find_spec("bitsandbytes") is not None)
        if self.cfg.model.load_in_4bit and not self.quantized:
            why = "CUDA" if not self.cuda else "bitsandbytes (pip install 'medassist[gpu]')"
            self.say(f"note: 4-bit loading needs {why}; loading {str(self.dtype).removeprefix('torch.')} weights "
                     "instead (more memory, same recipe)")
        self.optimizer = self.cfg.train.optimizer
        if "8bit" in self.optimizer and not (self.cuda and importlib.util.find_spec("bitsandbytes")):
            self.say(f"note: {self.optimizer} needs CUDA and bitsandbytes; using adamw_torch")
            self.optimizer = "adamw_torch"

    def _setup_model(self):
        cfg = self.cfg
        self.say(f"Loading {cfg.model.name} ({self.backend} backend, "
                 f"{'4-bit' if self.quantized else str(self.dtype).removeprefix('torch.')}, "
                 f"{'CUDA' if self.cuda else 'CPU'})")
        if Path(cfg.model.name).expanduser().is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no network, and must not wait for it
        try:
            model, tokenizer = (self._load_unsloth() if self.backend == "unsloth" else self._load_hf())
        except OSError as exc:
            raise FinetuneError(f"cannot load model {cfg.model.name}: {exc}".split("\n")[0]
                                + " (give a model folder with --model, or a Hub id when the Hub is reachable)") from None
        except ValueError as exc:
            if "target modules" in str(exc).lower() or "target_modules" in str(exc):
                raise FinetuneError(f"LoRA targets {cfg.lora.target_modules} do not match {cfg.model.name}'s "
                                    f"layers: set lora.target_modules to its projection names ({exc})") from None
            raise
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token  # padding is masked out of the loss; any known token does
        if tokenizer.bos_token_id is not None and tokenizer("x")["input_ids"][:1] != [tokenizer.bos_token_id]:
            self.say(f"warning: the tokenizer does not add its BOS token {tokenizer.bos_token!r}; a model trained "
                     "with BOS first will see different text (check the tokenizer files)")
        trainable, total = model.get_nb_trainable_parameters()
        self.say(f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha}: {trainable:,} trainable of {total:,} parameters "
                 f"({100 * trainable / total:.2f}%)")
        return model, tokenizer

    def _load_unsloth(self):
        import unsloth  # noqa: F401  (first: it patches transformers, peft and trl as it is imported)
        from unsloth import FastLanguageModel

        cfg = self.cfg
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=cfg.model.name, max_seq_length=cfg.model.max_seq_length,
            dtype=None if cfg.model.dtype == "auto" else self.dtype, load_in_4bit=self.quantized)
        checkpointing = {"unsloth": "unsloth", "true": True, "false": False}[cfg.train.gradient_checkpointing]
        model = FastLanguageModel.get_peft_model(
            model, r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, bias=cfg.lora.bias,
            target_modules=cfg.lora.target_modules, use_gradient_checkpointing=checkpointing,
            random_state=cfg.train.seed, use_rslora=False, loftq_config=None)
        return model, tokenizer

    def _load_hf(self):
        import torch
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = self.cfg
        tokenizer = AutoTokenizer.from_pretrained(cfg.model.name)
        kwargs = {"dtype": self.dtype}
        if self.quantized:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                               bnb_4bit_compute_dtype=self.dtype,
                                                               bnb_4bit_use_double_quant=True)
        if self.cuda:
            kwargs["device_map"] = {"": 0}
        model = AutoModelForCausalLM.from_pretrained(cfg.model.name, **kwargs)
        if self.quantized:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=self.checkpointing)
        lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, bias=cfg.lora.bias,
                          target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")
        torch.manual_seed(cfg.train.seed)  # the LoRA A matrices are random: same seed, same start
        return get_peft_model(model, lora), tokenizer

    @property
    def checkpointing(self) -> bool:
        """Transformers' gradient checkpointing for the hf backend ("unsloth" means its own variant on GPU)."""
        return self.cfg.train.gradient_checkpointing != "false"

    def _setup_data(self) -> tuple[list[dict], list[dict], list[Example], DataReport]:
        cfg, report = self.cfg, DataReport()
        examples = clean(read_rows(cfg.data, report), cfg.data, report)
        train, heldout = split(examples, cfg.data.eval_rows, cfg.train.seed)
        train_rows = tokenize(train, self.tokenizer, cfg.model.max_seq_length, cfg.data.overlong, report)
        eval_rows = tokenize(heldout, self.tokenizer, cfg.model.max_seq_length, cfg.data.overlong, report)
        report.train, report.eval = len(train_rows), len(eval_rows)
        if not train_rows:
            raise FinetuneError(f"no training rows left ({report.summary()}): check the column mapping, "
                                "model.max_seq_length and data.overlong")
        write_jsonl(self.output_dir / "heldout.jsonl", heldout, cfg.data)
        (self.output_dir / "data_report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        self.say(f"Data: {report.summary()}")
        t = cfg.train
        rows_per_step = t.batch_size * t.grad_accum
        if t.packing:
            tokens = sum(len(r["input_ids"]) for r in train_rows)
            self.say(f"Batch: {t.batch_size} x {t.grad_accum} accumulation = {rows_per_step} sequences/step of "
                     f"<= {cfg.model.max_seq_length:,} tokens, each packed with several rows; {t.max_steps} steps = "
                     f"about {t.max_steps * rows_per_step * cfg.model.max_seq_length / tokens:.2f} epochs "
                     f"of {len(train_rows)} rows")
        else:
            self.say(f"Batch: {t.batch_size} x {t.grad_accum} accumulation = {rows_per_step} rows/step "
                     f"(<= {rows_per_step * cfg.model.max_seq_length:,} tokens); {t.max_steps} steps = "
                     f"{t.max_steps * rows_per_step / len(train_rows):.2f} epochs of {len(train_rows)} rows")
        return train_rows, eval_rows, heldout, report

    def _setup_trainer(self):
        import torch
        from datasets import Dataset
        from transformers import PrinterCallback, ProgressCallback
        from trl import SFTConfig

        from finetune.metrics import MetricsLogger

        cfg = self.cfg
        evaluate = bool(self.eval_rows and cfg.eval.every)
        report_to = "none"
        if cfg.log.wandb:
            if importlib.util.find_spec("wandb") is None:
                raise FinetuneError("log.wandb needs Weights & Biases: pip install wandb (or set log.wandb=false)")
            os.environ.setdefault("WANDB_PROJECT", cfg.log.wandb_project)
            os.environ["WANDB_MODE"] = cfg.log.wandb_mode
            os.environ.setdefault("WANDB_DIR", str(self.output_dir))
            report_to = "wandb"
        args = SFTConfig(
            output_dir=str(self.output_dir),  # nothing lands here: save_strategy is "no"
            per_device_train_batch_size=cfg.train.batch_size,
            gradient_accumulation_steps=cfg.train.grad_accum,
            per_device_eval_batch_size=cfg.eval.batch_size,
            max_steps=cfg.train.max_steps,
            warmup_steps=cfg.train.warmup_steps,
            learning_rate=cfg.train.learning_rate,
            optim=self.optimizer,
            weight_decay=cfg.train.weight_decay,
            lr_scheduler_type=cfg.train.lr_scheduler,
            seed=cfg.train.seed,
            data_seed=cfg.train.seed,
            bf16=self.cuda and self.dtype == torch.bfloat16,
            fp16=self.cuda and self.dtype == torch.float16,
            # Unsloth set up its own checkpointing in get_peft_model; a second layer from the Trainer would undo it
            gradient_checkpointing=self.backend == "hf" and self.checkpointing,
            logging_steps=cfg.log.every,
            eval_strategy="steps" if evaluate else "no",
            eval_steps=cfg.eval.every if evaluate else None,
            eval_on_start=evaluate,  # the base model's eval loss: the number training has to beat
            save_strategy="no",  # the adapter is saved once at the end (no optimizer-state checkpoints)
            report_to=report_to,
            run_name=self.output_dir.name,
            max_length=cfg.model.max_seq_length,
            completion_only_loss=cfg.train.completion_only_loss,
            packing=cfg.train.packing,
            disable_tqdm=True,  # our progress bar and metric lines replace Transformers' own
            dataloader_pin_memory=self.cuda,
            use_cpu=not self.cuda,
        )
        self.logger = MetricsLogger(self.output_dir / "metrics.jsonl", self.say, cfg.eval.early_stopping_patience,
                                    cfg.eval.early_stopping_min_delta)
        trainer = sft_trainer_class(self.logger)(model=self.model, args=args, processing_class=self.tokenizer,
                             train_dataset=Dataset.from_list(self.train_rows),
                             eval_dataset=Dataset.from_list(self.eval_rows) if evaluate else None,
                             callbacks=[self.logger])
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        return trainer

    # ------------------------------------------------------------------ train
    def train(self) -> TrainResult:
        if self.trainer is None:
            raise FinetuneError("call setup() before train()")
        precision = "4-bit base, " if self.quantized else ""
        precision += str(self.dtype).removeprefix("torch.")
        result = TrainResult(backend=self.backend, device="cuda" if self.cuda else "cpu", precision=precision,
                             optimizer=self.optimizer, quantized=self.quantized)
        started = time.perf_counter()
        self.trainer.train()
        result.runtime_s = time.perf_counter() - started
        state = self.trainer.state
        result.steps = state.global_step
        evaluated = [r["step"] for r in self.logger.records if "eval_loss" in r]
        if self.trainer.eval_dataset is not None and (not evaluated or evaluated[-1] != state.global_step):
            self.trainer.evaluate()  # the final eval loss, for the model card and early stopping's choice
        result.stopped_early = self.logger.stopped_early
        best = self.logger.restore_best(self.model)
        if best is not None and best != state.global_step:
            result.restored_step = best
            self.say(f"kept the adapter from step {best} (best eval loss {self.logger.best_loss:.4f})")
        records = self.logger.records
        train_losses = [r["loss"] for r in records if "loss" in r]
        result.train_loss = train_losses[-1] if train_losses else None
        result.eval_losses = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
        # Training speed: the median log interval, so eval pauses and the first step's warm-up do not count.
        rates = [r["tokens_per_s"] for r in records if "loss" in r]
        result.tokens_per_s = statistics.median(rates[1:] if len(rates) > 2 else rates) if rates else 0.0
        from finetune.metrics import peak_memory_gib

        result.peak_mem_gib = peak_memory_gib()
        if train_losses and not all(math.isfinite(x) for x in train_losses):
            self.say("warning: the loss became NaN or infinite: lower train.learning_rate or check the data")
        self.result = result
        self.say(f"Trained {result.steps} steps in {result.runtime_s:.1f} s, {result.tokens_per_s:,.0f} tokens/s, "
                 f"peak {result.peak_mem_gib:.2f} GiB; last loss {result.train_loss}")
        return result

    # ------------------------------------------------------------------ save
    def save(self) -> dict[str, str]:
        """Write the outputs; returns {file name: what it is} (also listed in the model card)."""
        from finetune.export import export_gguf, find_gguf_converter, gguf_instructions, model_card
        from finetune.metrics import plot_loss

        if self.result is None:
            raise FinetuneError("call train() before save()")
        cfg, out = self.cfg, self.output_dir
        outputs = {"config.yaml": "the resolved config (rerun with --config)",
                   "data_report.json": "rows read, skipped by reason, train / held out",
                   "heldout.jsonl": "the held-out rows (eval loss, `finetune compare`)",
                   "metrics.jsonl": "loss, lr, grad norm, tokens/s, memory per log step; eval loss; smoke check"}
        self.model.save_pretrained(out / "adapter")
        self.tokenizer.save_pretrained(out / "adapter")
        outputs["adapter/"] = "the PEFT LoRA adapter (with the tokenizer)"
        self.say(f"Saved the adapter in {out / 'adapter'}")
        if plot_loss(self.logger.records, out / "loss.png", f"{cfg.model.name} on {Path(cfg.data.path).name}"):
            outputs["loss.png"] = "train and eval loss against step"
        if cfg.output.merged:
            self._save_merged(out / "merged")
            outputs["merged/"] = f"base + adapter merged ({self.merged_dtype}), loadable without PEFT"
            if cfg.output.gguf:
                target = out / f"model-{cfg.output.gguf}.gguf"
                converter = find_gguf_converter()
                if converter:
                    self.say(f"Converting the merged model to GGUF ({cfg.output.gguf}) with {converter}")
                    export_gguf(out / "merged", target, cfg.output.gguf, converter)
                    outputs[target.name] = f"the merged model as GGUF ({cfg.output.gguf}) for llama.cpp"
                else:
                    self.say(gguf_instructions(out / "merged", target, cfg.output.gguf))
        # Last of the model outputs: a generation that runs out of memory must not cost the adapter or merged model.
        smoke = self._smoke_check()
        (out / "train_result.json").write_text(json.dumps(self.result.__dict__, indent=2) + "\n")
        outputs["train_result.json"] = "the run's summary numbers"
        outputs["README.md"] = "this model card"
        card = model_card(cfg, self.report, self.result, outputs)
        if smoke:  # right after the results, where a reader looks for how well the run went
            head, use, rest = card.partition("\n## Use\n")
            card = f"{head}\n{smoke.markdown()}{use}{rest}"
        (out / "README.md").write_text(card, encoding="utf-8")
        self.say(f"Outputs in {out}: {', '.join(outputs)}")
        return outputs

    def _smoke_check(self):
        """Greedy generation on held-out prompts after training: does the tuned model close </think> and stop?

        A model that never emits EOS trains with a falling loss and looks fine in the model card, then rambles
        until max_new_tokens at inference; this is the one place a run can notice that before a user does.
        """
        import click

        from finetune.evaluate import SMOKE_BATCH_SIZE, generate, smoke_check

        if not self.heldout:
            self.say("Smoke check skipped: no held-out rows (data.eval_rows is 0)")
            return None

        def generate_fn(prompts: list[str], max_new_tokens: int):
            self.say(f"Smoke check: greedy generation on {len(prompts)} held-out prompts, up to {max_new_tokens} "
                     "new tokens each")
            started = time.perf_counter()
            return generate(self.model, self.tokenizer, prompts, max_new_tokens, SMOKE_BATCH_SIZE,
                            progress=lambda done, total: self.say(
                                f"  {done}/{total} generated ({time.perf_counter() - started:.0f} s)"))

        if self.backend == "unsloth":  # its inference mode: generating from a model set up for training is slow or fails
            from unsloth import FastLanguageModel

            FastLanguageModel.for_inference(self.model)
        self.model.eval()  # no dropout: the model as it will answer
        smoke = smoke_check(self.heldout, self.tokenizer, generate_fn)
        self.result.smoke_check = dict(smoke.__dict__)
        self.logger.write({"step": self.result.steps, "smoke_check": self.result.smoke_check})
        width = max(len(label) for label, _ in smoke.rows())
        for label, value in smoke.rows():
            self.say(f"  {label:<{width}}  {value}")
        if smoke.warning:
            # Red where the say callback is click.echo on a terminal; click strips the colour in pipes and logs.
            self.say(click.style(smoke.warning, fg="red", bold=True))
        return smoke

    def _save_merged(self, target: Path) -> None:
        """Merged weights in the base checkpoint's own precision (bf16 for the seeds' model: "merged 16-bit")."""
        import torch
        from transformers import AutoConfig

        if self.backend == "unsloth":
            self.merged_dtype = "16-bit"
            self.model.save_pretrained_merged(str(target), self.tokenizer, save_method="merged_16bit")
            return
        base_dtype = getattr(AutoConfig.from_pretrained(self.cfg.model.name), "dtype", None) or torch.float32
        base_dtype = getattr(torch, base_dtype) if isinstance(base_dtype, str) else base_dtype
        if self.quantized:  # merging into 4-bit weights would round the update away: merge into a 16-bit copy
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            base = AutoModelForCausalLM.from_pretrained(self.cfg.model.name, dtype=base_dtype)
            merged = PeftModel.from_pretrained(base, str(self.output_dir / "adapter")).merge_and_unload()
        else:
            merged = self.model.merge_and_unload()  # in place: the recipe's model is the merged one from here on
            self.model = merged
        merged = merged.to(base_dtype)
        self.merged_dtype = str(base_dtype).removeprefix("torch.")
        merged.save_pretrained(target, safe_serialization=True)
        self.tokenizer.save_pretrained(target)
        self.say(f"Saved the merged model ({self.merged_dtype}) in {target}")

    # ------------------------------------------------------------------ cleanup
    def cleanup(self) -> None:
        if self.cfg.log.wandb:
            import wandb

            wandb.finish()
        self.trainer = self.model = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run(cfg: FinetuneConfig, say: Say = print) -> tuple[TrainResult, dict[str, str]]:
    """setup, train, save and cleanup, in that order."""
    recipe = FinetuneRecipe(cfg, say)
    try:
        recipe.setup()
        result = recipe.train()
        outputs = recipe.save()
    finally:
        recipe.cleanup()
    return result, outputs
