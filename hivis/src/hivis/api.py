"""Python API: ``hivis.generate`` and ``hivis.autoregressive``."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path

import torch

from hivis.drafter import HiViSDrafter
from hivis.engine import (
    GenerationConfig,
    GenerationResult,
    autoregressive_generate,
    speculative_generate,
)
from hivis.prefix import PrefixCache
from hivis.protocols import Proposer
from hivis.targets import HFTarget, load_target
from hivis.targets.inputs import chat_prompt, load_images
from hivis.tree import TreeConfig


def _as_target(target) -> HFTarget:
    if isinstance(target, HFTarget):
        return target
    if isinstance(target, (str, Path)):
        return load_target(target)
    raise TypeError(f"target must be an HFTarget or a model directory, got {type(target)}")


def _as_proposer(drafter, target: HFTarget):
    if isinstance(drafter, (str, Path)):
        return HiViSDrafter.load(drafter, target)
    if not isinstance(drafter, Proposer):
        raise TypeError(f"drafter must be a HiViSDrafter or a drafter directory, got {drafter!r}")
    if isinstance(drafter, HiViSDrafter):
        from hivis.drafter import check_fits

        check_fits(drafter.config, target)
    return drafter


@contextmanager
def _eval_mode(*modules):
    """Inference mode with every submodule of ``modules`` in eval mode; the flags of the
    submodules that were training are restored afterwards. Only those are touched: ``eval()``
    walks and sets every submodule (~1 ms on a small VLM), a cost paid per generation."""
    training = [sub for module in modules for sub in module.modules() if sub.training]
    try:
        for sub in training:
            sub.training = False  # what eval() sets, module by module
        with torch.inference_mode():
            yield
    finally:
        for sub in training:
            sub.training = True


def _config(max_new_tokens, temperature, tree, stop_strings, eos_token_id, seed):
    eos = (
        None
        if eos_token_id is None
        else tuple([eos_token_id] if isinstance(eos_token_id, int) else eos_token_id)
    )
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        temperature=float(temperature) if isinstance(temperature, int) else temperature,
        tree=TreeConfig() if tree is None else tree,
        stop_strings=tuple(stop_strings),
        eos_token_ids=eos,
        seed=seed,
    )


def generate(
    target,
    drafter,
    images,
    prompt: str | None = None,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    tree: TreeConfig | None = None,
    stop_strings=(),
    eos_token_id: int | list[int] | None = None,
    seed: int | None = None,
    adaptive: bool = True,
    prefix_cache: PrefixCache | None = None,
    streamer=None,
    messages=None,
) -> GenerationResult:
    """Lossless speculative generation; returns text, new token ids and metrics.

    target: an :class:`~hivis.targets.HFTarget` or a model directory. drafter: a
    :class:`~hivis.drafter.HiViSDrafter`, a drafter directory, or any
    :class:`~hivis.protocols.Proposer`. images: PIL images or paths. Give either ``prompt``, the
    raw prompt with one image placeholder per image, or ``messages``: a question (str) or a list
    of chat messages, written into a prompt by the model's chat template (the usual way: chat
    models answer their template). tree: the draft tree (default ``TreeConfig()``;
    ``TreeConfig.chain(d)`` for a chain). At ``temperature`` 0 the output equals the target's
    greedy ``generate``; at T > 0 it is distributed as the target's sampling at that
    temperature. ``adaptive`` lets the engine pause drafting while the drafter's proposals keep
    failing (see :mod:`hivis.engine`). ``prefix_cache``: a :class:`~hivis.PrefixCache` shared by
    the questions about one image, so each prefills only what follows the shared prefix
    (:mod:`hivis.prefix`). ``streamer``: a Hugging Face streamer (``TextStreamer``,
    ``TextIteratorStreamer``); as with ``generate`` it gets the prompt ids first
    (``skip_prompt=True`` drops them), then every committed token once, in order, as soon as it
    is verified. Every input is checked before any compute.
    """
    config = _config(max_new_tokens, temperature, tree, stop_strings, eos_token_id, seed)
    config = dataclasses.replace(config, adaptive=bool(adaptive))
    target = _as_target(target)
    proposer = _as_proposer(drafter, target)
    _check_prefix_cache(prefix_cache)
    prepared = _prepare(target, images, prompt, messages)
    modules = [target.model] + ([proposer] if isinstance(proposer, torch.nn.Module) else [])
    _stream_prompt(streamer, prepared)
    with _eval_mode(*modules):
        return speculative_generate(target, proposer, prepared, config, prefix_cache, streamer)


def autoregressive(
    target,
    images,
    prompt: str | None = None,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    stop_strings=(),
    eos_token_id: int | list[int] | None = None,
    seed: int | None = None,
    prefix_cache: PrefixCache | None = None,
    streamer=None,
    messages=None,
) -> GenerationResult:
    """Baseline: the target alone with its KV cache, in the same harness and metrics
    (``prompt`` / ``messages``, ``prefix_cache`` and ``streamer`` as in :func:`generate`)."""
    config = _config(max_new_tokens, temperature, None, stop_strings, eos_token_id, seed)
    target = _as_target(target)
    _check_prefix_cache(prefix_cache)
    prepared = _prepare(target, images, prompt, messages)
    _stream_prompt(streamer, prepared)
    with _eval_mode(target.model):
        return autoregressive_generate(target, prepared, config, prefix_cache, streamer)


def _prepare(target: HFTarget, images, prompt, messages):
    """The model inputs for a raw ``prompt`` or for chat ``messages`` (exactly one given)."""
    if (prompt is None) == (messages is None):
        raise ValueError(
            "give either prompt= (raw, with the image placeholders) or messages= (a question "
            "or chat messages, written by the model's chat template)"
        )
    if messages is not None:
        images = load_images(images)
        prompt = chat_prompt(target, messages, len(images))
    return target.prepare(images, prompt)


def _check_prefix_cache(prefix_cache) -> None:
    if prefix_cache is not None and not isinstance(prefix_cache, PrefixCache):
        raise TypeError(f"prefix_cache must be a hivis.PrefixCache, got {type(prefix_cache)}")


def _stream_prompt(streamer, prepared) -> None:
    """The prompt ids go to the streamer first, as Hugging Face ``generate`` does."""
    if streamer is None:
        return
    if not callable(getattr(streamer, "put", None)) or not callable(getattr(streamer, "end", None)):
        raise TypeError(
            f"streamer must have put() and end() like transformers.TextStreamer, got {streamer!r}"
        )
    streamer.put(prepared.input_ids.cpu())
