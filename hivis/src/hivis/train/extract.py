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
    full, assistant = token_labels(target, record)
    limit = getattr(target.text_config, "max_position_embeddings", None)
    if limit is not None and full.length > limit:
        raise SkipRecord("longer than the target's context")
    _, hidden = target.prefill(full, target.new_cache())
    hidden = hidden[0].float().cpu()
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
