"""Multiple-choice scoring by log-likelihood, as lm-evaluation-harness scores `multiple_choice` tasks.

A 270M model rarely writes "Answer: X", so reading a letter back from its text measures format-following.
Here nothing is generated: for each option, the log-probability of the text " <option>" after the prompt
is summed over its tokens, and the most likely option is the model's choice.

    prompt       = finetune.prompt's question prompt (options listed, sources when retrieval is on), the
                   reasoning closed empty, then "Answer:"
    continuation = " " + the option's text (not its letter: with letters every continuation has the same
                   length, so acc_norm could not differ from acc, and a small model's letter preference
                   says little about medicine)

`acc` picks the largest summed log-probability; `acc_norm` divides it by the option's length in characters
first (lm-eval 0.4's `acc_norm`: `len(choice)`; its `acc_bytes` uses UTF-8 bytes), which removes the
penalty that every extra token puts on long options. Tokens are split as lm-eval splits them: prompt and
continuation tokenized together, the continuation being the tokens after the prompt's own tokens.

The prompt is read once per question and its attention cache shared by the options (one forward for the
batch's prompts, one for all their continuations), so an option costs its own few tokens, not the prompt
again: on a CPU with retrieval (a 1,000-token prompt, 4 options) about 4x less work than scoring each
prompt + option sequence on its own. On CUDA each prompt + option is scored as one right-padded sequence
instead, as lm-eval does: there the shared cache gave wrong numbers for some batches (transformers 5.17,
an H100, 2026-12-06: MedQA question 0086 scored alone matched lm-eval to 1e-5, in its batch of 16 it was 6
to 13 nats lower; the same batch on the CPU, transformers 5.23, was right), and the 4x costs little there.
"""

from __future__ import annotations

from finetune.prompt import MCQ_TEXT_RULES, close_reasoning, build_prompt, format_mcq

ANSWER_CUE = "Answer:"


def loglik_prompt(question: str, options: dict[str, str], sources=None) -> str:
    """The context every option is scored after (see the module docstring)."""
    return close_reasoning(build_prompt(format_mcq(question, options, MCQ_TEXT_RULES), sources), "") + ANSWER_CUE


def continuation(option: str) -> str:
    return " " + option.strip()


def pick(logliks: list[float], lengths: list[int]) -> tuple[int, int]:
    """(index of the largest log-likelihood, index of the largest per character); ties go to the first
    option, as numpy.argmax (what lm-eval uses) breaks them."""
    raw = max(range(len(logliks)), key=lambda i: (logliks[i], -i))
    norm = max(range(len(logliks)), key=lambda i: (logliks[i] / max(lengths[i], 1), -i))
    return raw, norm


def option_logliks(model, tokenizer, requests: list[tuple[str, list[str]]],
                   share_prompt: bool | None = None) -> list[list[float]]:
    """Summed log-probability of each continuation given its context, for (context, continuations) pairs
    scored in one batch. `share_prompt` (default: on a CPU, not on CUDA; see the module docstring): the
    contexts in one forward (left-padded), their attention cache copied to one row per continuation, the
    continuations in a second forward (right-padded, so nothing real sees a pad). Otherwise every context +
    continuation is one right-padded row of a single forward."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if share_prompt is None:
        share_prompt = device.type != "cuda"
    if not share_prompt:
        return _whole_sequence_logliks(model, tokenizer, requests, device, pad)
    contexts, rows = [], []  # rows: (request index, continuation token ids)
    for index, (context, options) in enumerate(requests):
        context_ids = tokenizer(context)["input_ids"]
        contexts.append(context_ids)
        for option in options:
            rows.append((index, tokenizer(context + option)["input_ids"][len(context_ids):]))
    width = max(map(len, contexts))
    ids = torch.full((len(contexts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, context_ids in enumerate(contexts):
        ids[i, width - len(context_ids):] = torch.tensor(context_ids)
        mask[i, width - len(context_ids):] = 1
    # Positions count real tokens only: a left-padded row then sees the positions it would see alone.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                    use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # predicts each continuation's first token
        owner = torch.tensor([index for index, _ in rows])
        cache = out.past_key_values
        cache.reorder_cache(owner.to(device))  # one copy of the context's cache per continuation
        length = max(len(tokens) for _, tokens in rows)
        cont = torch.full((len(rows), length), pad, dtype=torch.long)
        cont_mask = torch.zeros_like(cont)
        for r, (_, tokens) in enumerate(rows):
            cont[r, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            cont_mask[r, :len(tokens)] = 1
        known = mask.sum(-1)[owner]  # real context tokens of each row's context
        out = model(input_ids=cont.to(device), attention_mask=torch.cat([mask[owner], cont_mask], -1).to(device),
                    position_ids=(known[:, None] + torch.arange(length)).to(device), past_key_values=cache,
                    use_cache=True)
        totals = []
        for r, (index, tokens) in enumerate(rows):
            # token 0 from the context's last logits; token j from the continuation's logits at j - 1 (a row
            # at a time: the whole batch's logits in float32 would be rows x length x vocabulary x 4 bytes)
            later = torch.log_softmax(out.logits[r, :len(tokens) - 1].float(), dim=-1)
            totals.append(first[index, tokens[0]] + later.gather(-1, cont[r, 1:len(tokens), None].to(device)).sum())
        totals = torch.stack(totals).tolist()  # one device-to-host copy, not one per row
    return _per_request(totals, requests)


def _whole_sequence_logliks(model, tokenizer, requests, device, pad: int) -> list[list[float]]:
    """option_logliks without the shared cache: one right-padded row per context + continuation."""
    import torch

    rows = []  # (context token count, all token ids)
    for context, options in requests:
        known = len(tokenizer(context)["input_ids"])
        rows += [(known, tokenizer(context + option)["input_ids"]) for option in options]
    width = max(len(tokens) for _, tokens in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, (_, tokens) in enumerate(rows):
        ids[r, :len(tokens)], mask[r, :len(tokens)] = torch.tensor(tokens), 1
    # Every position's logits are kept here (rows x width x vocabulary: 0.5 GB a row for a 1,000-token prompt and
    # Gemma's 262k vocabulary in bf16), so the rows go through the model a few at a time, under about 4 GB.
    per_forward = max(1, int(4e9 // (width * model.config.vocab_size * 2)))
    totals = []
    with torch.inference_mode():
        for first in range(0, len(rows), per_forward):
            part = slice(first, first + per_forward)
            logits = model(input_ids=ids[part].to(device), attention_mask=mask[part].to(device)).logits
            for r, (known, tokens) in enumerate(rows[part]):  # a row at a time: float32 logits are large
                logprobs = torch.log_softmax(logits[r, known - 1:len(tokens) - 1].float(), dim=-1)
                totals.append(logprobs.gather(-1, ids[first + r, known:len(tokens), None].to(device)).sum())
        totals = torch.stack(totals).tolist()
    return _per_request(totals, requests)


def _per_request(totals: list[float], requests) -> list[list[float]]:
    """The flat list of every continuation's total, cut back into one list per request."""
    result, r = [], 0
    for _, options in requests:
        result.append(totals[r:r + len(options)])
        r += len(options)
    return result
