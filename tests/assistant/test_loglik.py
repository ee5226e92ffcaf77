"""Multiple-choice scoring by log-likelihood (`eval mcq --scoring loglik`): the batched, prompt-sharing scorer
against a plain one-sequence-at-a-time computation, the choice on the real Gemma-3-270M, acc vs acc_norm,
resumed runs, and clear errors for bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from assistant.backends import GenerationSettings, load_backend
from assistant.evaluation import AnswerLog, EvalError, MCQItem, RunConfig, load_mcq, run_mcq
from assistant.loglik import continuation, loglik_prompt, option_logliks, pick


@pytest.fixture(scope="module")
def tiny(tiny_model):
    # float32 on every CPU: the batched and the one-at-a-time sums are compared to 1e-4, below bf16's rounding
    return load_backend("transformers", model=str(tiny_model), compute_dtype="float32")


@pytest.fixture(scope="module")
def gemma(gemma_models):
    return load_backend("transformers", model=str(gemma_models / "gemma-3-270m"))


def loglik_config(**changes) -> RunConfig:
    fields = dict(model="m", backend="transformers", adapter=None, use_rag=False, k=5, index=None, settings={},
                  scoring="loglik")
    return RunConfig(**{**fields, **changes})


def one_at_a_time(backend, context: str, options: list[str]) -> list[float]:
    """The reference: each context + option scored as one unpadded sequence, no cache, tokens split as lm-eval."""
    import torch

    tokenizer, model = backend.tokenizer, backend.model
    context_ids = tokenizer(context)["input_ids"]
    scores = []
    for option in options:
        tokens = tokenizer(context + option)["input_ids"][len(context_ids):]
        with torch.inference_mode():
            logits = model(torch.tensor([context_ids + tokens])).logits[0].float()
        logprobs = torch.log_softmax(logits[len(context_ids) - 1:-1], dim=-1)
        scores.append(float(logprobs.gather(-1, torch.tensor(tokens)[:, None]).sum()))
    return scores


@pytest.mark.parametrize("share_prompt", [True, False], ids=["prompt cache shared (CPU)", "whole sequences (CUDA)"])
def test_batched_scores_equal_each_sequence_scored_alone(tiny, share_prompt):
    """Left-padded contexts of different lengths, one cache per option, right-padded options of different
    lengths (or each context + option one right-padded row): the same numbers as each sequence on its own."""
    requests = [("Question: first line treatment for high blood pressure?\nAnswer:",
                 [" a thiazide diuretic or an ACE inhibitor", " metformin", " asthma"]),
                ("The patient is a 54 year old man with type 2 diabetes. " * 6 + "\nAnswer:", [" pneumonia", " x"]),
                ("Dose?\nAnswer:", [" 500 mg twice daily", " lisinopril", " Check kidney function", " fever"])]
    batched = option_logliks(tiny.model, tiny.tokenizer, requests, share_prompt=share_prompt)
    for (context, options), got in zip(requests, batched):
        assert got == pytest.approx(one_at_a_time(tiny, context, options), abs=1e-4)


def test_pick_breaks_ties_to_the_first_option_and_normalises_by_characters():
    assert pick([-2.0, -2.0, -3.0], [1, 1, 1]) == (0, 0)
    assert pick([-2.0, -6.0], [3, 60]) == (0, 1)  # -0.67 vs -0.1 per character


def test_prompt_lists_the_options_and_ends_with_the_answer_cue():
    prompt = loglik_prompt("Which organ stores urine?", {"A": "Bladder", "B": "Kidney"})
    assert "A. Bladder\nB. Kidney" in prompt and prompt.endswith("</think>\nAnswer:")
    assert continuation("  Bladder ") == " Bladder"


@pytest.mark.slow
def test_gemma_chooses_the_option_it_finds_obvious_by_both_measures(gemma, tmp_path):
    # Not the first option: a 270M model leans towards copying the first listed option after "Answer:".
    options = {"A": "the liver stores sugar", "B": "the skin is an organ", "C": "the heart pumps blood",
               "D": "the lungs exchange gas"}
    item = MCQItem("demo", "1", "Which option says 'the heart pumps blood'?", options, "C")
    summary = run_mcq([item], gemma, GenerationSettings(), tmp_path, loglik_config(model=gemma.model_name))
    record = AnswerLog(tmp_path, loglik_config(model=gemma.model_name).key).done()[("demo", "1")]
    assert record["predicted"] == "C" and record["predicted_norm"] == "C"
    assert summary["datasets"]["all"]["accuracy"] == summary["datasets"]["all"]["accuracy_norm"] == 1.0
    # the choice is the option of largest log-likelihood, and every option was scored
    assert max(record["logliks"]) == record["logliks"][2] and len(record["logliks"]) == 4


@pytest.mark.slow
def test_acc_norm_differs_from_acc_when_option_lengths_differ(gemma, tmp_path):
    """A short likely option wins on the sum; a long option just as natural per character wins once divided by
    its length: acc and acc_norm choose differently, as they do in lm-evaluation-harness."""
    counting = "Continue the count: one, two, three, four, five, six, seven, eight, nine,"
    long = "ten, eleven, twelve, thirteen, fourteen, fifteen, sixteen, seventeen, eighteen, nineteen, twenty"
    item = MCQItem("demo", "2", counting, {"A": "ten", "B": long}, "B")
    summary = run_mcq([item], gemma, GenerationSettings(), tmp_path, loglik_config(model=gemma.model_name))
    row = summary["datasets"]["all"]
    assert (row["accuracy"], row["accuracy_norm"]) == (0.0, 1.0)
    assert row["random_baseline"] == 0.5 and row["ci95_norm"][0] > 0


class Interrupted(Exception):
    pass


def test_interrupted_loglik_run_continues_without_scoring_again(tiny, tmp_path):
    questions = [MCQItem("mmlu" if i % 2 else "medqa", f"q{i}", f"Question {i}: which organ stores urine?",
                         {"A": "Bladder", "B": "Kidney", "C": "Ureter"}, "A") for i in range(5)]

    def stop_after_two(done, total):
        if done >= 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_mcq(questions, tiny, GenerationSettings(), tmp_path, loglik_config(), batch_size=2,
                on_progress=stop_after_two)
    first = (tmp_path / "answers.jsonl").read_text().splitlines()
    assert len(first) == 2
    summary = run_mcq(questions, tiny, GenerationSettings(), tmp_path, loglik_config(), batch_size=3)
    assert summary["resumed"] == 2 and summary["datasets"]["all"]["n"] == 5
    lines = (tmp_path / "answers.jsonl").read_text().splitlines()
    assert lines[:2] == first and len(lines) == 5  # the first two kept, only the other three scored
    assert run_mcq(questions, tiny, GenerationSettings(), tmp_path, loglik_config())["resumed"] == 5
    # generate and loglik answers of the same model never stand in for each other
    generate = loglik_config(scoring="generate", settings={"max_new_tokens": 8})
    assert generate.key != loglik_config(settings={"max_new_tokens": 8}).key
    assert {"accuracy_norm", "ci95_norm", "random_baseline"} <= summary["datasets"]["all"].keys()


def test_generate_keys_are_those_of_runs_made_before_loglik_scoring():
    """Adding the scoring field must not orphan earlier answers: a generate key hashes what it hashed before."""
    import hashlib

    from finetune.prompt import SourceText, build_prompt, format_mcq

    run = loglik_config(scoring="generate", settings={"max_new_tokens": 32})
    before = {key: value for key, value in run.__dict__.items() if key != "scoring"}
    prompt = build_prompt(format_mcq("?", {"A": "a", "B": "b"}), [SourceText(1, "title", "text")])
    expected = hashlib.sha256(json.dumps({**before, "prompt": prompt}, sort_keys=True).encode()).hexdigest()[:12]
    assert run.key == expected


def test_a_row_without_a_field_is_named_with_its_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps({"id": "1", "question": "Q?", "options": {"A": "a", "B": "b"}, "answer": "A"}) + "\n"
                    + json.dumps({"id": "2", "question": "Q?", "answer": "A"}) + "\n")
    with pytest.raises(EvalError, match=r"broken.jsonl, line 2: missing field 'options'"):
        load_mcq(path)


def test_eval_mcq_loglik_command(tiny_model, tmp_path):
    from assistant.cli import main

    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"dataset": ["mmlu", "bioasq"][i % 2], "id": str(i), "question": f"Q{i}?",
                                        "options": {"A": "Bladder", "B": "Kidney"}, "answer": "A"}) + "\n"
                            for i in range(4)))
    args = ["eval", "mcq", "--data", str(data), "--no-rag", "--model", str(tiny_model), "--scoring", "loglik",
            "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["config"]["scoring"] == "loglik" and summary["datasets"]["all"]["n"] == 4
    assert "accuracy_norm" in summary["datasets"]["bioasq"]
    table = CliRunner().invoke(main, args)
    assert "| acc_norm |" in table.stdout and "4 answers reused" in table.stderr

    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"id": "1", "options": {"A": "a"}, "answer": "A"}) + "\n")
    bad = CliRunner().invoke(main, ["eval", "mcq", "--data", str(broken), "--no-rag", "--scoring", "loglik"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert f"{broken}, line 1: missing field 'question'" in bad.stderr
    remote = CliRunner().invoke(main, ["eval", "mcq", "--data", str(data), "--no-rag", "--scoring", "loglik",
                                       "--backend", "openai", "--base-url", "http://127.0.0.1:9"])
    assert remote.exit_code == 2 and "--scoring loglik needs" in remote.stderr
