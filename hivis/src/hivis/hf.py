"""Hugging Face ``generate``, both ways round.

hivis inside ``model.generate`` (the plug-in point transformers offers):

* :func:`generate`: pass it as ``model.generate(**inputs, custom_generate=hivis.hf.generate,
  drafter=drafter, max_new_tokens=...)``. ``generate`` does its usual preparation (generation
  config, image encoding, logits processors, stopping criteria) and hands the decoding loop to
  hivis, which returns what ``generate`` returns: the token ids [1, L + new], or with
  ``return_dict_in_generate=True`` a :class:`HiViSGenerateOutput` (``sequences`` and
  ``hivis_metrics``).
* :func:`export_folder` writes the same as a ``custom_generate/generate.py`` folder with the
  drafter inside, for ``model.generate(..., custom_generate=FOLDER, trust_remote_code=True)``.

What is honoured: ``max_new_tokens`` / ``max_length``, ``eos_token_id``, ``do_sample``,
``temperature``, ``top_k``, ``top_p``, ``min_p``, ``typical_p``, ``epsilon_cutoff``,
``eta_cutoff``, ``suppress_tokens``, ``stop_strings``, ``stopping_criteria``, ``streamer``.
Refused before decoding, with the reason: batches, beams, several return sequences, padding,
a filled cache, per-step scores / attentions / hidden states, and logits processors that look
at the sequence (repetition penalties, n-gram bans, minimum lengths): hivis applies the
processors to every node of a draft tree at once, which is exact only for processors that act
on each row of scores alone.

hivis beside ``generate`` (baselines in the same harness):

* :func:`generate_prepared`: the target's own greedy ``model.generate`` on a
  :class:`~hivis.targets.PreparedPrompt`, new token ids only - the reference the self-check
  and the tests compare hivis against.
* :func:`hf_generate`: Hugging Face ``generate`` and its prompt-lookup assisted generation as
  :class:`~hivis.engine.GenerationResult` with wall-clock metrics. HF does not report its own
  acceptance, so ``verify_steps`` and the acceptance fields stay 0.
"""

from __future__ import annotations

import functools
import inspect
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers.generation import logits_process as lp
from transformers.generation.utils import GenerateDecoderOnlyOutput

from hivis.api import _as_target, _config, _eval_mode
from hivis.drafter import HiViSDrafter
from hivis.engine import GenerationConfig, GenerationResult, speculative_generate
from hivis.metrics import GenerationMetrics
from hivis.targets.base import HFTarget, PreparedPrompt
from hivis.targets.families import family_of
from hivis.targets.inputs import prepared_from_encoded
from hivis.tree import TreeConfig

# Processors that change each row of scores on its own, never reading the sequence: applying
# them to all nodes of a tree at once gives each node what generate would give it.
_ROW_WISE = (
    lp.TemperatureLogitsWarper,
    lp.TopKLogitsWarper,
    lp.TopPLogitsWarper,
    lp.MinPLogitsWarper,
    lp.TypicalLogitsWarper,
    lp.EpsilonLogitsWarper,
    lp.EtaLogitsWarper,
    lp.SuppressTokensLogitsProcessor,
    lp.LogitNormalization,
)
# generate's own bookkeeping in model_kwargs; everything else is an image input.
_CONTROL_KEYS = frozenset(
    {
        "attention_mask",
        "position_ids",
        "cache",
        "past_key_values",
        "logits_to_keep",
        "use_cache",
        "cache_position",
        "token_type_ids",
    }
)
_UNSUPPORTED_OUTPUTS = (
    "output_scores",
    "output_logits",
    "output_attentions",
    "output_hidden_states",
)


@dataclass
class HiViSGenerateOutput(GenerateDecoderOnlyOutput):
    """``GenerateDecoderOnlyOutput`` (``sequences`` [1, L + new]) plus hivis's metrics."""

    hivis_metrics: GenerationMetrics | None = None


def generate(
    model,
    input_ids: torch.Tensor,
    logits_processor=None,
    stopping_criteria=None,
    generation_config=None,
    synced_gpus: bool = False,
    streamer=None,
    drafter=None,
    tree: TreeConfig | None = None,
    stop_strings=None,
    tokenizer=None,
    adaptive: bool = True,
    **model_kwargs,
):
    """The decoding loop ``model.generate(..., custom_generate=hivis.hf.generate)`` runs.

    input_ids: [1, L] the prompt, image placeholders expanded (as the processor returns it).
    drafter: a :class:`~hivis.HiViSDrafter` loaded for this ``model`` (through
    ``hivis.wrap_target(model, processor)``) or a drafter directory. tree: the draft tree
    (default ``TreeConfig()``). stop_strings: as ``generate``'s (hivis matches them with
    Hugging Face's ``StopStringCriteria``; the tokenizer comes from the drafter's target, from
    ``tokenizer``, or from the model's directory). The other arguments are what ``generate``
    prepared; see the module docstring for what is honoured and what is refused.
    """
    if streamer is None:
        streamer = _streamer_of_calling_generate()
    _check_request(input_ids, generation_config, synced_gpus, model_kwargs)
    temperature, warp = _scores_transform(generation_config, logits_processor)
    target, proposer = _target_and_drafter(model, drafter, tokenizer, stop_strings)
    prepared = _prepared(target, input_ids, model_kwargs)
    config = GenerationConfig(
        max_new_tokens=_max_new_tokens(generation_config, prepared.length),
        temperature=temperature,
        tree=TreeConfig() if tree is None else tree,
        stop_strings=tuple([stop_strings] if isinstance(stop_strings, str) else stop_strings or ()),
        eos_token_ids=_eos_ids(generation_config),
        adaptive=bool(adaptive),
        warp=warp,
        stopping_criteria=tuple(stopping_criteria or ()),
    )
    with _eval_mode(model, proposer):
        result = speculative_generate(target, proposer, prepared, config, None, streamer)
    new = torch.tensor([result.token_ids], dtype=input_ids.dtype, device=input_ids.device)
    sequences = torch.cat([input_ids, new], dim=1)
    if generation_config is not None and generation_config.return_dict_in_generate:
        return HiViSGenerateOutput(sequences=sequences, hivis_metrics=result.metrics)
    return sequences


def _streamer_of_calling_generate():
    """The ``streamer`` given to the ``generate`` call that is running us, or None.

    transformers 5.x puts the prompt into the streamer, then passes a callable
    ``custom_generate`` only the keywords of its own signature that ``_sample`` lacks, so
    ``streamer`` never reaches it; it is still a local of ``generate``'s frame.
    """
    frame = inspect.currentframe()
    for _ in range(6):  # generate -> (wrappers) -> this function: a few frames up at most
        frame = frame.f_back if frame is not None else None
        if frame is None:
            return None
        code = frame.f_code
        if code.co_name == "generate" and code.co_filename.endswith("generation/utils.py"):
            return frame.f_locals.get("streamer")
    return None


def _check_request(input_ids, generation_config, synced_gpus, model_kwargs) -> None:
    """Refuse what hivis cannot honour, naming the setting (before any decoding)."""
    if generation_config is not None:
        _check_generation_config(generation_config)
    if input_ids is None or input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError("hivis.hf.generate needs input_ids [1, L] (inputs_embeds are not used)")
    if input_ids.shape[0] != 1:
        raise ValueError(
            f"hivis decodes one sequence at a time; got a batch of {input_ids.shape[0]}: "
            "call generate once per prompt"
        )
    if synced_gpus:
        raise ValueError("hivis.hf.generate does not support synced_gpus")
    mask = model_kwargs.get("attention_mask")
    if mask is not None and not bool((mask == 1).all()):
        raise ValueError("hivis.hf.generate takes unpadded prompts (attention_mask all ones)")
    cache = model_kwargs.get("cache", model_kwargs.get("past_key_values"))
    if cache is not None and cache.get_seq_length() > 0:
        raise ValueError("hivis.hf.generate starts from an empty cache; do not pass a filled one")


def _check_generation_config(generation_config) -> None:
    # generate has already repeated the prompt per beam / return sequence: check these first.
    for name in ("num_beams", "num_return_sequences"):
        value = getattr(generation_config, name, None) or 1
        if value > 1:
            raise ValueError(f"hivis.hf.generate does not support {name}={value} (only 1)")
    asked = [name for name in _UNSUPPORTED_OUTPUTS if getattr(generation_config, name, False)]
    if asked:
        raise ValueError(
            f"hivis.hf.generate does not return {', '.join(asked)}; "
            "return_dict_in_generate gives sequences and hivis_metrics"
        )


def _scores_transform(generation_config, processors):
    """(temperature, warp) so that the engine's scores equal ``generate``'s processed ones.

    The temperature is divided out first, as generate's warper list does; the other
    processors must be row-wise (:data:`_ROW_WISE`) and run in generate's order.
    """
    processors = list(processors or ())
    strange = [type(proc).__name__ for proc in processors if not isinstance(proc, _ROW_WISE)]
    if strange:
        raise ValueError(
            f"hivis.hf.generate cannot apply {', '.join(strange)}: it reads the sequence, and "
            "hivis scores every node of a draft tree at once. Supported: temperature, top_k, "
            "top_p, min_p, typical_p, epsilon_cutoff, eta_cutoff, suppress_tokens, "
            "renormalize_logits"
        )
    sampling = generation_config is not None and bool(generation_config.do_sample)
    temperature = 1.0 if sampling else 0.0
    rest = []
    for proc in processors:
        if isinstance(proc, lp.TemperatureLogitsWarper):
            temperature = float(proc.temperature) if sampling else temperature
        else:
            rest.append(proc)
    return temperature, (_row_wise(rest) if rest else None)


def _row_wise(processors):
    """A warp [n, V] or [V] -> same shape applying ``processors`` (row-wise) in order."""

    def warp(scores: torch.Tensor) -> torch.Tensor:
        rows = scores.float() if scores.dim() == 2 else scores.float()[None]
        no_context = torch.zeros((rows.shape[0], 1), dtype=torch.long, device=rows.device)
        for proc in processors:
            rows = proc(no_context, rows)
        return rows if scores.dim() == 2 else rows[0]

    return warp


def _target_and_drafter(model, drafter, tokenizer, stop_strings):
    """(target wrapping ``model``, the drafter bound to it) from a drafter or its directory."""
    if isinstance(drafter, HiViSDrafter):
        if drafter.target.model is not model:
            raise ValueError(
                "the drafter was loaded for another model object; load it with "
                "hivis.HiViSDrafter.load(dir, hivis.wrap_target(model, processor))"
            )
        if stop_strings and drafter.target.tokenizer is None:
            raise ValueError("stop_strings need a tokenizer: pass tokenizer=")
        return drafter.target, drafter
    if not isinstance(drafter, (str, Path)):
        raise TypeError(
            "hivis.hf.generate needs drafter=: a hivis.HiViSDrafter or a drafter directory, "
            f"got {drafter!r}"
        )
    tokenizer = tokenizer if tokenizer is not None else _tokenizer_of(model, stop_strings)
    target = HFTarget(model, tokenizer, None, family_of(model.config.model_type))
    return target, HiViSDrafter.load(drafter, target)


def _tokenizer_of(model, stop_strings):
    """The tokenizer saved beside the model's weights (needed only for stop strings)."""
    if not stop_strings:
        return None
    from transformers import AutoTokenizer

    source = Path(str(getattr(model, "name_or_path", "")))
    if not source.is_dir():
        raise ValueError(
            "stop_strings need the model's tokenizer; pass tokenizer= to generate (or a drafter "
            "loaded with hivis.HiViSDrafter.load(dir, target))"
        )
    return AutoTokenizer.from_pretrained(source)


def _prepared(target: HFTarget, input_ids: torch.Tensor, model_kwargs: dict) -> PreparedPrompt:
    """The prompt generate encoded, with its image inputs (or computed image features)."""
    encoded = {k: v for k, v in model_kwargs.items() if k not in _CONTROL_KEYS}
    encoded["input_ids"] = input_ids.cpu()
    positions = None
    if target.mrope:  # generate's [4, 1, L]: text positions, then the 3 M-RoPE rows
        positions = model_kwargs["position_ids"][-3:, 0, :].cpu()
    return prepared_from_encoded(target, encoded, positions)


def _max_new_tokens(generation_config, prompt_length: int) -> int:
    """generate turned max_new_tokens into max_length = prompt + new; undo that."""
    if generation_config is None or generation_config.max_length is None:
        return 20  # generate's own default
    return max(1, int(generation_config.max_length) - prompt_length)


def _eos_ids(generation_config) -> tuple[int, ...] | None:
    eos = None if generation_config is None else generation_config.eos_token_id
    if eos is None:
        return ()
    return tuple([int(eos)] if isinstance(eos, int) else [int(e) for e in eos])


_FOLDER_CODE = '''"""hivis speculative decoding as a custom_generate folder (hivis export-hf).

model.generate(**inputs, custom_generate=FOLDER, trust_remote_code=True, max_new_tokens=...)
decodes with the drafter saved next to this folder; the output is the model's own.
"""

DRAFTER = {drafter!r}


def generate(model, **kwargs):
    from hivis.hf import generate_with_folder_drafter

    return generate_with_folder_drafter(model, DRAFTER, **kwargs)
'''


def export_folder(drafter_dir: str | Path, out: str | Path) -> Path:
    """Write ``out/custom_generate/generate.py`` (+ requirements) and ``out/drafter``.

    The generate.py names the drafter by its absolute path (transformers copies generate.py
    into its module cache before running it), so moving ``out`` needs a new export.
    """
    drafter_dir, out = Path(drafter_dir), Path(out)
    missing = [n for n in ("config.json", "drafter.safetensors") if not (drafter_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{drafter_dir} is not a hivis drafter (missing {missing})")
    json.loads((drafter_dir / "config.json").read_text())  # a readable config, or a clear error
    code_dir = out / "custom_generate"
    code_dir.mkdir(parents=True, exist_ok=True)
    saved = out / "drafter"
    saved.mkdir(exist_ok=True)
    for name in ("config.json", "drafter.safetensors"):
        shutil.copyfile(drafter_dir / name, saved / name)
    (code_dir / "generate.py").write_text(_FOLDER_CODE.format(drafter=str(saved.resolve())))
    (code_dir / "requirements.txt").write_text("hivis\n")
    return out


def generate_with_folder_drafter(model, drafter: str, **arguments):
    """What an exported folder's generate.py runs: ``arguments`` are all of ``generate``'s.

    generate is called again with :func:`generate` as a callable; the streamer, tokenizer and
    stop strings are handed to it directly, since generate would not pass them on.
    """
    arguments.pop("custom_generate", None)
    streamer = arguments.pop("streamer", None)
    tokenizer = arguments.pop("tokenizer", None)
    stop_strings = arguments.pop("stop_strings", None)
    generation_config = arguments.get("generation_config")
    if stop_strings is None and generation_config is not None:
        stop_strings, generation_config.stop_strings = generation_config.stop_strings, None
    inputs = arguments.get("inputs")
    inputs = arguments.get("input_ids") if inputs is None else inputs
    if streamer is not None and inputs is not None:
        streamer.put(inputs.cpu())  # what generate does first
    bound = functools.partial(
        generate, drafter=drafter, streamer=streamer, tokenizer=tokenizer, stop_strings=stop_strings
    )
    return model.generate(custom_generate=bound, **arguments)


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


__all__ = [
    "HiViSGenerateOutput",
    "export_folder",
    "generate",
    "generate_prepared",
    "generate_with_folder_drafter",
    "hf_generate",
]
