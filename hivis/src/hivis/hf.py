"""Hugging Face ``generate`` on a hivis target: the one place hivis calls it.

* :func:`generate_prepared`: the target's own ``model.generate`` (greedy) on a
  :class:`~hivis.targets.PreparedPrompt`, new token ids only - the reference the self-check
  and the tests compare hivis against, and the engine of the baselines below.
* :func:`hf_generate`: external baselines in the same harness and result type: Hugging Face
  ``generate`` and its assisted generation with prompt lookup (``prompt_lookup_num_tokens``).
  They return :class:`~hivis.engine.GenerationResult` with wall-clock metrics, so benchmark
  tables can put them next to :func:`hivis.generate` and :func:`hivis.autoregressive`. HF does
  not report its own acceptance, so ``verify_steps`` and the acceptance fields stay 0.
"""

from __future__ import annotations

import time

import torch

from hivis.api import _as_target, _config, _eval_mode
from hivis.engine import GenerationResult
from hivis.metrics import GenerationMetrics
from hivis.targets.base import HFTarget, PreparedPrompt


def generate_prepared(
    target: HFTarget,
    prepared: PreparedPrompt,
    max_new_tokens: int,
    eos_token_id: int | list[int] | None = None,
    **generate_kwargs,
) -> list[int]:
    """The target's own greedy ``generate`` on ``prepared`` (new tokens only).

    ``eos_token_id`` None keeps the model's generation_config EOS; ``generate_kwargs`` go to
    ``generate`` as they are (``stop_strings``, ``prompt_lookup_num_tokens``, ...). M-RoPE
    families get the ``mm_token_type_ids`` their ``generate`` needs for image positions.
    """
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, **generate_kwargs)
    if eos_token_id is not None:
        kwargs["eos_token_id"] = eos_token_id
    if target.mrope:
        kwargs["mm_token_type_ids"] = prepared.visual_mask[None].int()
    with torch.inference_mode():
        out = target.model.generate(
            input_ids=prepared.input_ids.to(target.device), **prepared.vision_inputs, **kwargs
        )
    return out[0, prepared.length :].tolist()


def hf_generate(
    target,
    images,
    prompt: str,
    max_new_tokens: int = 64,
    prompt_lookup_num_tokens: int | None = None,
    eos_token_id: int | list[int] | None = None,
) -> GenerationResult:
    """Greedy ``model.generate``; with ``prompt_lookup_num_tokens`` HF's prompt lookup."""
    config = _config(max_new_tokens, 0.0, None, (), eos_token_id, None)
    if prompt_lookup_num_tokens is not None and prompt_lookup_num_tokens < 1:
        raise ValueError("prompt_lookup_num_tokens must be >= 1")
    target = _as_target(target)
    prepared = target.prepare(images, prompt)
    kwargs = {}
    if prompt_lookup_num_tokens is not None:
        kwargs["prompt_lookup_num_tokens"] = prompt_lookup_num_tokens
        image_token = getattr(target.model.config, "image_token_id", None)
        if image_token is not None:
            # Prompt lookup copies n-gram continuations from the prompt, image placeholders
            # included (e.g. after "USER:"), and the model then refuses a sequence with more
            # image tokens than image features. Suppressed tokens are never proposed; the
            # target never emits an image token itself, so its output is unchanged.
            kwargs["suppress_tokens"] = [image_token]
    eos = None if config.eos_token_ids is None else list(config.eos_token_ids)
    start = time.perf_counter()
    with _eval_mode(target.model):
        tokens = generate_prepared(target, prepared, config.max_new_tokens, eos, **kwargs)
    metrics = GenerationMetrics(new_tokens=len(tokens), target_prefill_length=prepared.length)
    metrics.total_s = time.perf_counter() - start
    text = target.tokenizer.decode(tokens, skip_special_tokens=True)
    return GenerationResult(text, tokens, metrics)


__all__ = ["generate_prepared", "hf_generate"]
