"""Per-family prompt preparation: validation, placeholder expansion and target positions.

Every preparer takes (target, images, prompt) and returns a
:class:`~hivis.targets.base.PreparedPrompt`. Visual-token ids come from the model config
(``image_token_id``) and the placeholder string from the processor or tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from hivis.targets.base import PreparedPrompt
from hivis.targets.families import Family

_TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


def image_token_id(model) -> int:
    """The id the model replaces by image features, read from its config."""
    config = model.config
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise ValueError(f"{type(config).__name__} names no image_token_id")


def load_images(images) -> list[Image.Image]:
    """Accept PIL images or paths; return RGB PIL images, or raise naming the bad one."""
    if images is None:
        return []
    if isinstance(images, (str, Path, Image.Image)):
        images = [images]
    loaded = []
    for item in images:
        if isinstance(item, Image.Image):
            loaded.append(item.convert("RGB"))
            continue
        if not isinstance(item, (str, Path)):
            raise TypeError(f"an image must be a PIL image or a file path, got {type(item)}")
        try:
            with Image.open(item) as img:
                loaded.append(img.convert("RGB"))
        except (FileNotFoundError, IsADirectoryError, UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot read image {str(item)!r}: {err}") from None
    return loaded


def check_prompt(prompt: str, placeholder: str, n_images: int) -> None:
    """Raise unless ``prompt`` is non-empty and holds one ``placeholder`` per image."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt is empty; give the question text with the image placeholder")
    found = prompt.count(placeholder)
    if n_images == 0:
        raise ValueError(f"no image given; pass one image per {placeholder!r} in the prompt")
    if found == 0:
        raise ValueError(
            f"the prompt has no image placeholder; write {placeholder!r} where each of the "
            f"{n_images} image(s) goes"
        )
    if found != n_images:
        raise ValueError(
            f"the prompt has {found} image placeholder(s) {placeholder!r} but {n_images} "
            "image(s) were given; they must match"
        )


def _finish(target, encoded: dict, positions: torch.Tensor, next_position: int) -> PreparedPrompt:
    input_ids = encoded["input_ids"]
    visual = input_ids[0] == image_token_id(target.model)
    vision = {k: _to_device(v, target) for k, v in encoded.items() if k not in _TEXT_KEYS}
    return PreparedPrompt(input_ids, vision, visual, positions, next_position)


def _to_device(value, target):
    """Tensors to the target's device (floating ones to its dtype); others as they are."""
    if not isinstance(value, torch.Tensor):
        return value
    value = value.to(target.device)
    return value.to(target.dtype) if value.is_floating_point() else value


def _linear_positions(target, encoded: dict) -> PreparedPrompt:
    length = encoded["input_ids"].shape[1]
    return _finish(target, encoded, torch.arange(length)[None, :], length)


def chat_prompt(target, messages, n_images: int) -> str:
    """The prompt the model's chat template writes for ``messages``, ready for the answer.

    messages: a question (str; it gets one image entry per image before it) or a list of
    ``{"role": ..., "content": ...}`` messages in Hugging Face's chat format.
    """
    owner = target.processor if target.processor is not None else target.tokenizer
    if getattr(owner, "chat_template", None) is None:
        owner = target.tokenizer
    if getattr(owner, "chat_template", None) is None:
        raise ValueError(
            "this model has no chat template; give the raw prompt with its image placeholder "
            "(API: prompt=..., CLI: --raw-prompt)"
        )
    if isinstance(messages, str):
        placeholder = getattr(target.processor, "image_token", None) or "<image>"
        if placeholder in messages:
            raise ValueError(
                f"the question contains the image placeholder {placeholder!r}; the chat "
                "template places the images itself: write the question alone, or pass a raw "
                "prompt (API: prompt=..., CLI: --raw-prompt)"
            )
        content = [{"type": "image"}] * n_images + [{"type": "text", "text": messages}]
        messages = [{"role": "user", "content": content}]
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise TypeError("messages must be a question string or a list of role/content dicts")
    return owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def prepared_from_encoded(target, encoded: dict, positions: torch.Tensor | None = None):
    """A prompt the caller already encoded: ``input_ids`` [1, L] plus the family's image
    inputs (pixel values, grids, or the image features Hugging Face ``generate`` computed,
    ``mm_encoder_outputs``). positions: [R, L] target position ids when the caller has them
    (``generate`` computes M-RoPE ids before encoding the images); None = computed here.
    The first new token goes at ``max(positions) + 1``. Used by :mod:`hivis.hf`."""
    if positions is not None:
        return _finish(target, encoded, positions, int(positions.max()) + 1)
    if target.family in (Family.QWEN2_VL, Family.QWEN2_5_VL):
        return _mrope_positions(target, encoded)
    return _linear_positions(target, encoded)


def prepare_with_processor(target, images, prompt: str) -> PreparedPrompt:
    """LLaVA, LLaVA-NeXT and Idefics3: the family's own processor expands placeholders."""
    images = load_images(images)
    processor = target.processor
    check_prompt(prompt, processor.image_token, len(images))
    if target.family in (Family.IDEFICS3, Family.SMOLVLM):
        encoded = processor(images=[images], text=prompt, return_tensors="pt")
    else:
        encoded = processor(images=images, text=prompt, return_tensors="pt")
    return prepared_from_encoded(target, dict(encoded))


def _mrope_positions(target, encoded: dict) -> PreparedPrompt:
    """Qwen2-VL / 2.5-VL: 3-D positions from the model's own ``get_rope_index``.

    The text after the image continues at ``max(position) + 1`` = length + rope delta.
    """
    input_ids = encoded["input_ids"]
    token_types = encoded.get("mm_token_type_ids")
    if token_types is None:
        token_types = (input_ids == image_token_id(target.model)).int()
    positions, deltas = target.inner.get_rope_index(
        input_ids,
        mm_token_type_ids=token_types,
        image_grid_thw=encoded["image_grid_thw"],
        attention_mask=torch.ones_like(input_ids),
    )
    next_position = input_ids.shape[1] + int(deltas.reshape(-1)[0])
    return _finish(target, encoded, positions[:, 0, :].clone(), next_position)


def prepare_qwen_fallback(target, images, prompt: str) -> PreparedPrompt:
    """Qwen2-VL / 2.5-VL without a loadable processor (it needs torchvision for video).

    Each ``<|image_pad|>`` becomes ``t*h*w / merge**2`` copies, the processor's own rule.
    """
    images = load_images(images)
    tokenizer, image_processor = target.tokenizer, target.image_processor
    placeholder = tokenizer.convert_ids_to_tokens(image_token_id(target.model))
    check_prompt(prompt, placeholder, len(images))
    vision = dict(image_processor(images=images, return_tensors="pt"))
    merge = image_processor.merge_size**2
    pieces = prompt.split(placeholder)
    text = pieces[0]
    for grid, piece in zip(vision["image_grid_thw"], pieces[1:], strict=True):
        text += placeholder * (int(grid.prod()) // merge) + piece
    encoded = dict(tokenizer(text, return_tensors="pt"))
    encoded.update(vision)
    return _mrope_positions(target, encoded)


def prepare_smolvlm_fallback(target, images, prompt: str) -> PreparedPrompt:
    """SmolVLM without a loadable processor (it needs torchvision and num2words).

    Without image splitting each ``<image>`` becomes ``<fake_token_around_image><global-img>``
    + ``image_seq_len`` x ``<image>`` + ``<fake_token_around_image>``, the processor's rule.
    """
    images = load_images(images)
    tokenizer, image_processor = target.tokenizer, target.image_processor
    if getattr(image_processor, "do_image_splitting", False):
        raise ValueError(
            "SmolVLM image splitting needs the full SmolVLMProcessor (install torchvision and "
            "num2words); hivis's fallback handles do_image_splitting=False only"
        )
    placeholder = tokenizer.convert_ids_to_tokens(image_token_id(target.model))
    check_prompt(prompt, placeholder, len(images))
    config = target.model.config
    vision_cfg = config.vision_config
    seq_len = (vision_cfg.image_size // vision_cfg.patch_size) ** 2 // config.scale_factor**2
    expanded = (
        "<fake_token_around_image><global-img>"
        + placeholder * seq_len
        + "<fake_token_around_image>"
    )
    encoded = dict(tokenizer(prompt.replace(placeholder, expanded), return_tensors="pt"))
    encoded.update(image_processor(images=[images], return_tensors="pt"))
    return _linear_positions(target, encoded)
