"""From a conversation record to drafter training features, through the target.

Rendering: a record's turns become one text with the target's own chat template (the
processor's or the tokenizer's); without one, a plain ``USER: ...\\nASSISTANT: ...`` format
ending each answer with the EOS token (the generation prompt is the text up to
``ASSISTANT:``). The ``<image>`` placeholders of the record become the
family's own placeholder. Assistant spans (answer text and its end-of-turn markup, which the
model must learn to emit) are found by rendering the conversation prefix by prefix.

Features follow the drafter's row convention (:mod:`hivis.drafter`): row j fuses token x_j
with the target's hidden state f_{j-1} at position p_j, and is trained to predict f_j (and,
through the LM head, token x_{j+1}). Rows are the positions 1..L-1 with every visual position
removed for HiViS (kept for the EAGLE-style baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hivis.targets.base import HFTarget, PreparedPrompt
from hivis.targets.inputs import image_token_id
from hivis.train.data import IMAGE_PLACEHOLDER, Record, Role, Turn
from hivis.train.features import RecordFeatures, SkipRecord


@dataclass(frozen=True)
class Rendered:
    """A rendered conversation: ``text`` and its assistant spans as character ranges."""

    text: str
    assistant_spans: tuple[tuple[int, int], ...]


def family_placeholder(target: HFTarget) -> str:
    """The image token string of the target's processor (or tokenizer)."""
    processor = getattr(target, "processor", None)
    token = getattr(processor, "image_token", None) if processor is not None else None
    return token or target.tokenizer.convert_ids_to_tokens(image_token_id(target.model))


def user_placeholder(target: HFTarget) -> str:
    """What one image looks like in a prompt: the image token, wrapped in the vision start/end
    tokens for the Qwen2-VL families (as their chat templates write it)."""
    token = family_placeholder(target)
    if target.mrope:
        vocab = target.tokenizer.get_vocab()
        start, end = "<|vision_start|>", "<|vision_end|>"
        if start in vocab and end in vocab:
            return f"{start}{token}{end}"
    return token


def _chat_template_owner(target: HFTarget):
    processor = getattr(target, "processor", None)
    if processor is not None and getattr(processor, "chat_template", None):
        return processor
    if getattr(target.tokenizer, "chat_template", None):
        return target.tokenizer
    return None


def _render(target: HFTarget, turns: tuple[Turn, ...], generation_prompt: bool) -> str:
    placeholder = user_placeholder(target)
    owner = _chat_template_owner(target)
    if owner is None:
        # Each answer ends with EOS, where the target stops; nothing follows it in its span.
        eos = target.tokenizer.eos_token or ""
        text = ""
        for i, turn in enumerate(turns):
            body = turn.text.replace(IMAGE_PLACEHOLDER, placeholder)
            if turn.role is Role.USER:
                text += ("\n" if i else "") + f"USER: {body}\nASSISTANT:"
            else:
                text += f" {body}{eos}"
        return text
    messages = [
        {
            "role": "user" if t.role is Role.USER else "assistant",
            "content": t.text.replace(IMAGE_PLACEHOLDER, placeholder),
        }
        for t in turns
    ]
    return owner.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )


def render(target: HFTarget, turns: tuple[Turn, ...]) -> Rendered:
    """Render ``turns`` and locate every assistant span (see module docstring)."""
    spans = []
    for i, turn in enumerate(turns):
        if turn.role is not Role.ASSISTANT:
            continue
        before = _render(target, turns[:i], generation_prompt=True)
        through = _render(target, turns[: i + 1], generation_prompt=False)
        if not through.startswith(before):
            raise ValueError(
                "the chat template does not render conversations prefix by prefix; "
                "assistant spans cannot be located"
            )
        spans.append((len(before), len(through)))
    return Rendered(_render(target, turns, generation_prompt=False), tuple(spans))


def generation_prompt(target: HFTarget, record: Record, turn: int) -> tuple[str, int]:
    """Prompt text for assistant turn ``turn`` (index into record.turns) and the number of
    images it references."""
    if record.turns[turn].role is not Role.ASSISTANT:
        raise ValueError(f"turn {turn} of record {record.id} is not an assistant turn")
    text = _render(target, record.turns[:turn], generation_prompt=True)
    return text, text.count(family_placeholder(target))


def _prepare_prefix(target: HFTarget, record: Record, text: str) -> PreparedPrompt:
    n = text.count(family_placeholder(target))
    return target.prepare(list(record.images[:n]), text)


def token_labels(target: HFTarget, record: Record) -> tuple[PreparedPrompt, torch.Tensor]:
    """The full prepared conversation and an [L] bool mask of assistant tokens."""
    rendered = render(target, record.turns)
    full = _prepare_prefix(target, record, rendered.text)
    ids = full.input_ids[0]
    mask = torch.zeros(ids.shape[0], dtype=torch.bool)
    for start, stop in rendered.assistant_spans:
        begin = _prefix_tokens(target, record, rendered.text[:start], ids)
        # The last span ends the conversation: no need to prepare the whole text again.
        end = (
            len(ids)
            if stop == len(rendered.text)
            else _prefix_tokens(target, record, rendered.text[:stop], ids)
        )
        mask[begin:end] = True
    return full, mask


def _prefix_tokens(target: HFTarget, record: Record, text: str, full_ids: torch.Tensor) -> int:
    ids = _prepare_prefix(target, record, text).input_ids[0] if text else full_ids[:0]
    n = ids.shape[0]
    if n > full_ids.shape[0] or not torch.equal(ids, full_ids[:n]):
        raise SkipRecord("tokenization not prefix-stable at a turn boundary")
    return n


def row_index(prompt: PreparedPrompt, hide_visual_tokens: bool) -> torch.Tensor:
    """Sequence positions j (>= 1) that become drafter rows, ascending: [r] long."""
    keep = torch.ones(prompt.length, dtype=torch.bool)
    keep[0] = False
    if hide_visual_tokens:
        keep &= ~prompt.visual_mask.cpu()
    return torch.nonzero(keep).squeeze(-1)


@torch.inference_mode()
def extract_features(
    target: HFTarget, record: Record, hide_visual_tokens: bool = True
) -> RecordFeatures:
    """Run the target once over the whole conversation and keep what the drafter learns from.

    Raises :class:`SkipRecord` when the conversation exceeds the target's context.
    """
    return extract_features_modes(target, record, (hide_visual_tokens,))[hide_visual_tokens]


@torch.inference_mode()
def extract_features_modes(
    target: HFTarget, record: Record, modes: tuple[bool, ...] = (True, False)
) -> dict[bool, RecordFeatures]:
    """:func:`extract_features` for several row modes (``hide_visual_tokens`` values) from
    one target pass: the text-row and all-row features share the same hidden states."""
    full, assistant = token_labels(target, record)
    limit = getattr(target.text_config, "max_position_embeddings", None)
    if limit is not None and full.length > limit:
        raise SkipRecord("longer than the target's context")
    _, hidden = target.prefill(full, target.new_cache())
    hidden = hidden[0].float().cpu()
    return {hide: _row_features(record, full, assistant, hidden, hide) for hide in modes}


def _row_features(
    record: Record,
    full: PreparedPrompt,
    assistant: torch.Tensor,
    hidden: torch.Tensor,
    hide_visual_tokens: bool,
) -> RecordFeatures:
    """The drafter rows of one mode from the target's hidden states ``hidden`` [L, H]."""
    index = row_index(full, hide_visual_tokens)
    next_index = index + 1
    supervised = torch.zeros_like(index, dtype=torch.bool)
    inside = next_index < full.length
    supervised[inside] = assistant[next_index[inside]]
    contiguous = torch.zeros_like(supervised)
    contiguous[1:] = index[1:] == index[:-1] + 1
    return RecordFeatures(
        record_id=record.id,
        input_ids=full.input_ids[0, index].cpu(),
        loss_mask=supervised,
        hidden_in=hidden[index - 1].contiguous(),
        hidden_out=hidden[index].contiguous(),
        positions=full.positions[:, index].cpu(),
        contiguous=contiguous,
    )


def target_description(target: HFTarget, hide_visual_tokens: bool) -> dict:
    """What a feature store must match: family, sizes, the drafter mode, and a fingerprint of
    the target's config and its (frozen, shared) embedding and LM head."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(target.model.config.to_dict(), sort_keys=True).encode())
    for weight in (target.embed_tokens.weight, target.lm_head.weight):
        digest.update(weight.detach().float().cpu().numpy().tobytes())
    return {
        "family": target.family.value,
        "hidden_size": target.hidden_size,
        "vocab_size": target.vocab_size,
        "hide_visual_tokens": hide_visual_tokens,
        "fingerprint": digest.hexdigest(),
    }


def regenerate_answers(
    target: HFTarget,
    record: Record,
    temperature: float = 0.0,
    max_new_tokens: int = 256,
    seed: int = 0,
) -> Record:
    """Replace every assistant turn by the target's own answer (greedy at T = 0, sampled
    otherwise), turn by turn, so the drafter learns the target's distribution."""
    from hivis.api import autoregressive

    current = record
    answers: list[str] = []
    for i, turn in enumerate(record.turns):
        if turn.role is not Role.ASSISTANT:
            continue
        prompt, n_images = generation_prompt(target, current, i)
        result = autoregressive(
            target,
            list(record.images[:n_images]),
            prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed + i,
        )
        ids = [t for t in result.token_ids if t != target.tokenizer.eos_token_id]
        answers.append(target.tokenizer.decode(ids, skip_special_tokens=True).strip())
        current = current.with_answer(i, answers[-1])
    return current


def batchable(target: HFTarget, record: Record) -> bool:
    """Whether :func:`regenerate_answers_batch` serves ``record``: one assistant turn, the
    last, and a target without M-RoPE (whose positions Hugging Face's ``generate`` derives
    from the padding mask)."""
    assistant = [i for i, t in enumerate(record.turns) if t.role is Role.ASSISTANT]
    return not target.mrope and assistant == [len(record.turns) - 1]


@torch.inference_mode()
def regenerate_answers_batch(
    target: HFTarget, records: list[Record], max_new_tokens: int = 256
) -> list[Record]:
    """Greedy answers of the target for several single-answer records in one left-padded
    batch through Hugging Face's ``generate`` (the target's step costs a fraction more for
    many rows on a CPU, so a batch of records of similar answer length is several times
    faster than one record at a time).

    Padding changes the arithmetic, not the algorithm: on the world's target the answers
    were identical to :func:`regenerate_answers` (24 of 24); they are training data, where a
    rare different tie would not matter. Records must satisfy :func:`batchable`.
    """
    if not all(batchable(target, r) for r in records):
        raise ValueError("regenerate_answers_batch takes single-answer records (see batchable)")
    from transformers import GenerationConfig

    prompts = [
        _prepare_prefix(target, r, generation_prompt(target, r, len(r.turns) - 1)[0])
        for r in records
    ]
    pad = target.tokenizer.pad_token_id
    pad = target.tokenizer.eos_token_id if pad is None else pad
    width = max(p.length for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - prompt.length :] = prompt.input_ids[0]
        mask[row, width - prompt.length :] = 1
    vision = {
        key: torch.cat([p.vision_inputs[key] for p in prompts]).to(target.device)
        for key in prompts[0].vision_inputs
    }
    eos = target.tokenizer.eos_token_id
    # A fresh config: plain greedy, whatever penalties a checkpoint's own config carries.
    greedy = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad, eos_token_id=eos
    )
    out = target.model.generate(
        input_ids=ids.to(target.device),
        attention_mask=mask.to(target.device),
        generation_config=greedy,
        **vision,
    )
    answers = []
    for record, row in zip(records, out[:, width:].tolist(), strict=True):
        ids_row = row[: row.index(eos)] if eos in row else row
        text = target.tokenizer.decode(ids_row, skip_special_tokens=True).strip()
        answers.append(record.with_answer(len(record.turns) - 1, text))
    return answers
