"""Several questions about one image in one training sequence, with a 4-D attention mask.

Layout of one row: ``prefix`` = ``<s>USER: `` + the image's visual tokens, then one segment per
question, ``\\n{question} ASSISTANT: {answer}</s>``. Each segment attends to the prefix and
causally to itself only, and its positions continue from the end of the prefix, so every segment
sees exactly the sequence that a single-question prompt would give it: the logits equal those of
separate forward passes, at a fraction of the cost (the image is encoded once).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from hivis.world.data.tasks import Task, TaskType
from hivis.world.data.tokenizer import answer_text, prompt_text
from hivis.world.target.segment_attention import SegmentLayout, segment_attention, segment_layout

IGNORE = -100
TASK_TYPES = tuple(TaskType)


@dataclass
class PackedBatch:
    """Tensors of one packed batch (B rows, T positions).

    input_ids ``[B, T]``; attention_mask ``[B, 1, T, T]`` bool (True = may attend);
    position_ids ``[B, T]``; labels ``[B, T]``: the token that position t must predict (the
    next token of its segment's answer) or IGNORE; segment_ids ``[B, T]``: index into
    ``segment_tasks`` of the segment whose answer position t predicts, else -1;
    pixel_values ``[B, 3, H, W]``; segment_tasks: the task type of each segment;
    lookup_keys ``[B, T, T]`` bool or None: True at (query t, key s) when the answer position t
    should look at position s, the visual token of an object its question is about (see
    ``hivis.world.target.lookup``); a query row with no True is not supervised;
    segment_layout: where the prefix and segments lie (``hivis.world.target.segment_attention``),
    None when the rows' prefixes differ in length.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    segment_ids: torch.Tensor
    pixel_values: torch.Tensor
    segment_tasks: list[TaskType]
    lookup_keys: torch.Tensor | None = None
    segment_layout: SegmentLayout | None = None

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments of the target's forward for this batch."""
        return {
            "input_ids": self.input_ids,
            "pixel_values": self.pixel_values,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }

    def forward(self, model):
        """``model``'s output on this batch. With a segment layout the text model attends
        segment by segment (the same logits up to float rounding, a fraction of the cost)."""
        if self.segment_layout is None:
            return model(**self.model_inputs())
        with segment_attention(model):
            return model(**self.model_inputs(), segment_layout=self.segment_layout)


@dataclass
class _Row:
    ids: list[int]
    positions: list[int]
    labels: list[int]
    segment_ids: list[int]
    spans: list[tuple[int, int]]  # [start, end) of each segment within the row
    prefix_len: int
    lookups: list[tuple[int, int]]  # (query position, key position) pairs to look at


def _split_at_image(ids: list[int], image_id: int) -> tuple[list[int], list[int]]:
    if ids.count(image_id) != 1:
        raise ValueError(
            f"expected exactly one image token in the prompt, got {ids.count(image_id)}"
        )
    at = ids.index(image_id)
    return ids[:at], ids[at + 1 :]


def _span_tokens(spans, char: int) -> tuple[int, ...]:
    """The visual tokens of the span of ``spans`` (``(start, end, tokens)``) holding answer
    character ``char``; none outside every span."""
    return next((tokens for start, end, tokens in spans if start <= char < end), ())


def _answer_last_chars(offsets: list[tuple[int, int]], head_len: int, task) -> list[int]:
    """The last character of each token after the image token, counted from the first
    character of the answer; ``offsets``: the character spans of the tokens of
    ``prompt_text + answer_text``, ``head_len`` tokens before the image token."""
    answer_char = len(prompt_text(task.question)) + 1  # answer_text adds a space
    return [end - 1 - answer_char for _, end in offsets[head_len + 1 :]]


def _pack_row(
    tasks,
    tokenizer,
    image_id: int,
    num_visual: int,
    tasks_out: list,
    referents=None,
    answer_spans=None,
) -> _Row:
    """One row; ``referents``: per task, indices of the visual tokens its answer should look
    at (None: no look-up supervision); ``answer_spans``: per task, ``(start, end, tokens)``
    spans of answer characters that should look at ``tokens`` instead (an answer position
    follows the span of the token it predicts, located by that token's last character)."""
    encoded = tokenizer(
        [prompt_text(t.question) + answer_text(t.answer) for t in tasks],
        add_special_tokens=False,
        return_offsets_mapping=answer_spans is not None,
    )
    full = encoded["input_ids"]
    prompts = tokenizer([prompt_text(t.question) for t in tasks], add_special_tokens=False)[
        "input_ids"
    ]
    head, _ = _split_at_image(full[0], image_id)
    prefix = head + [image_id] * num_visual
    row = _Row(
        list(prefix),
        list(range(len(prefix))),
        [IGNORE] * len(prefix),
        [-1] * len(prefix),
        [],
        len(prefix),
        [],
    )
    referents = referents if referents is not None else [()] * len(tasks)
    answer_spans = answer_spans if answer_spans is not None else [()] * len(tasks)
    for k, (task, ids, prompt, looked_at, spans) in enumerate(
        zip(tasks, full, prompts, referents, answer_spans, strict=True)
    ):
        this_head, segment = _split_at_image(ids, image_id)
        if this_head != head:
            raise ValueError("all prompts of one row must share the text before the image")
        answer_start = len(prompt) - len(head) - 1  # index in segment of the first answer token
        if spans:
            last_chars = _answer_last_chars(encoded["offset_mapping"][k], len(this_head), task)
        seg_index = len(tasks_out)
        tasks_out.append(task.task_type)
        start = len(row.ids)
        for j, token in enumerate(segment):
            row.ids.append(token)
            row.positions.append(len(prefix) + j)
            target = segment[j + 1] if answer_start - 1 <= j < len(segment) - 1 else IGNORE
            row.labels.append(target)
            row.segment_ids.append(seg_index if target != IGNORE else -1)
            if target != IGNORE:
                wanted = _span_tokens(spans, last_chars[j + 1]) if spans else looked_at
                row.lookups += [(len(row.ids) - 1, len(head) + v) for v in wanted]
        row.spans.append((start, len(row.ids)))
    return row


def _row_mask(row: _Row, length: int) -> torch.Tensor:
    """``[length, length]`` bool: causal prefix; each segment sees the prefix and itself."""
    mask = torch.zeros(length, length, dtype=torch.bool)
    p = row.prefix_len
    mask[:p, :p] = torch.tril(torch.ones(p, p, dtype=torch.bool))
    for start, end in row.spans:
        n = end - start
        mask[start:end, :p] = True
        mask[start:end, start:end] = torch.tril(torch.ones(n, n, dtype=torch.bool))
    mask[len(row.ids) :, 0] = True  # padding rows attend somewhere, so softmax stays finite
    return mask


def _lookup_keys(rows: list[_Row], length: int) -> torch.Tensor:
    keys = torch.zeros(len(rows), length, length, dtype=torch.bool)
    for b, row in enumerate(rows):
        if row.lookups:
            queries, targets = zip(*row.lookups, strict=True)
            keys[b, list(queries), list(targets)] = True
    return keys


def _check_referents(items, num_visual_tokens: int, referents, answer_spans) -> None:
    """Raise ValueError unless ``referents`` and ``answer_spans`` (see ``pack_batch``) fit
    ``items``."""
    if answer_spans is not None and referents is None:
        raise ValueError("answer_spans refine referents: pass referents too")
    counts = [len(t) for _, t in items]
    if referents is not None and [len(r) for r in referents] != counts:
        raise ValueError("referents needs one entry per task of every item")
    if answer_spans is not None and [len(r) for r in answer_spans] != counts:
        raise ValueError("answer_spans needs one entry per task of every item")
    looked_at = [v for item in referents or [] for task in item for v in task]
    looked_at += [
        v for item in answer_spans or [] for task in item for *_, tokens in task for v in tokens
    ]
    if any(not 0 <= v < num_visual_tokens for v in looked_at):
        raise ValueError(f"referent visual-token indices must be in [0, {num_visual_tokens})")


def pack_batch(
    items: list[tuple[Image.Image, list[Task]]],
    processor,
    num_visual_tokens: int,
    referents: list[list[tuple[int, ...]]] | None = None,
    answer_spans: list[list[tuple]] | None = None,
) -> PackedBatch:
    """Pack ``items`` (one image and its tasks per row) into one ``PackedBatch``.

    ``referents`` (optional, for look-up supervision): per item, per task, the indices in
    ``[0, num_visual_tokens)`` of the visual tokens its answer should look at; the batch's
    ``lookup_keys`` then marks them for every answer position of the task. ``answer_spans``
    (optional, with ``referents``): per item, per task, ``(start, end, tokens)`` spans of answer
    characters whose positions look at ``tokens`` instead (``lookup.answer_span_tokens``)."""
    if not items or any(not tasks for _, tasks in items):
        raise ValueError("every row needs an image and at least one task")
    _check_referents(items, num_visual_tokens, referents, answer_spans)
    tokenizer = processor.tokenizer
    image_id = tokenizer.convert_tokens_to_ids(tokenizer.image_token)
    segment_tasks: list[TaskType] = []
    rows = [
        _pack_row(
            tasks,
            tokenizer,
            image_id,
            num_visual_tokens,
            segment_tasks,
            referents[i] if referents is not None else None,
            answer_spans[i] if answer_spans is not None else None,
        )
        for i, (_, tasks) in enumerate(items)
    ]
    length = max(len(r.ids) for r in rows)
    pad = tokenizer.pad_token_id

    def padded(values: list[int], fill: int) -> list[int]:
        return values + [fill] * (length - len(values))

    prefix_lens = {r.prefix_len for r in rows}
    layout = (
        segment_layout(prefix_lens.pop(), [r.spans for r in rows], length)
        if len(prefix_lens) == 1
        else None
    )
    pixel_values = processor.image_processor([img for img, _ in items], return_tensors="pt")[
        "pixel_values"
    ]
    return PackedBatch(
        input_ids=torch.tensor([padded(r.ids, pad) for r in rows]),
        attention_mask=torch.stack([_row_mask(r, length) for r in rows])[:, None],
        position_ids=torch.tensor([padded(r.positions, 0) for r in rows]),
        labels=torch.tensor([padded(r.labels, IGNORE) for r in rows]),
        segment_ids=torch.tensor([padded(r.segment_ids, -1) for r in rows]),
        pixel_values=pixel_values,
        segment_tasks=segment_tasks,
        lookup_keys=_lookup_keys(rows, length) if referents is not None else None,
        segment_layout=layout,
    )


def segment_exact_match(logits: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
    """``[num_segments]`` bool: every answer token (EOS included) of the segment is the argmax.

    Under teacher forcing this is exactly greedy exact match: greedy decoding reproduces the
    reference answer iff the reference token is the argmax at every answer position.
    logits ``[B, T, vocab]``.
    """
    correct = logits.argmax(-1) == batch.labels
    result = torch.ones(len(batch.segment_tasks), dtype=torch.bool)
    seg = batch.segment_ids
    wrong = seg[(seg >= 0) & ~correct]
    result[wrong.unique()] = False
    return result
