"""The model zoo of the self-checks: tiny random-weight VLMs of every supported family,
built offline from configs.

Each builder writes a complete Hugging Face model directory (config, safetensors weights,
tokenizer, image processor and, when this environment can build it, the processor) that loads
back through ``AutoModelForImageTextToText`` / ``AutoProcessor`` exactly as a user's model does.
Used by ``hivis verify lossless``, the tests, the engine benchmark and the on-the-fly demo.
Nothing is downloaded.

The tokenizer is a small BPE trained offline on :data:`WORDS` (or word level for
tiny-vocabulary tests), so prompts made of :data:`WORDS` round-trip exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hivis.targets.families import Family

WORDS = (
    "what is the red blue green yellow circle square triangle how many objects are there "
    "describe image a of in left right top bottom yes no one two three four big small and "
    "color shape near far"
).split()

_BASE_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
_FAMILY_SPECIALS = {
    Family.LLAVA: ["<image>"],
    Family.LLAVA_NEXT: ["<image>"],
    Family.QWEN2_VL: ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"],
    Family.QWEN2_5_VL: ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"],
    Family.IDEFICS3: ["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"],
    Family.SMOLVLM: [
        "<image>",
        "<fake_token_around_image>",
        "<global-img>",
        "<end_of_utterance>",
        "<video>",
    ],
}
# The placeholder a user writes in the prompt for one image, per family.
PLACEHOLDER = {
    Family.LLAVA: "<image>",
    Family.LLAVA_NEXT: "<image>",
    Family.QWEN2_VL: "<|vision_start|><|image_pad|><|vision_end|>",
    Family.QWEN2_5_VL: "<|vision_start|><|image_pad|><|vision_end|>",
    Family.IDEFICS3: "<image>",
    Family.SMOLVLM: "<image>",
}


@dataclass(frozen=True)
class TinySpec:
    """Sizes of a tiny target. ``vocab_words`` limits the vocabulary (tiny-vocabulary tests)."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    vision_hidden: int = 32
    image_size: int = 16
    vocab_words: int = len(WORDS)
    seed: int = 0
    patch_size: int = 0  # LLaVA families; 0 = image_size // 4 (16 visual tokens)


def vocabulary(family: Family, spec: TinySpec) -> list[str]:
    """Token strings in id order: base specials, family specials, then words."""
    return _BASE_SPECIALS + _FAMILY_SPECIALS[family] + WORDS[: spec.vocab_words]


def _word_level(words: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return core


def _bpe(specials: list[str], spec: TinySpec):
    """A small BPE (Metaspace, like Llama's) trained offline on :data:`WORDS`.

    Any lowercase text encodes (letters are in the alphabet), which Hugging Face's stop-string
    matching needs.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    core.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyz"),
    )
    core.train_from_iterator([" ".join(WORDS[: spec.vocab_words])] * 3, trainer=trainer)
    return core


def build_tokenizer(family: Family, spec: TinySpec):
    """The family's special tokens over a BPE of :data:`WORDS`, or, when ``spec`` limits the
    vocabulary (tiny-vocabulary tests), a word-level tokenizer of exactly those words."""
    from transformers import PreTrainedTokenizerFast

    specials_list = _BASE_SPECIALS + _FAMILY_SPECIALS[family]
    if spec.vocab_words < len(WORDS):
        core = _word_level(vocabulary(family, spec))
    else:
        core = _bpe(specials_list, spec)
    specials = {"image_token": _FAMILY_SPECIALS[family][0]}
    if family in (Family.QWEN2_VL, Family.QWEN2_5_VL):
        specials.update(
            video_token="<|video_pad|>",
            vision_start_token="<|vision_start|>",
            vision_end_token="<|vision_end|>",
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens=specials,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": _FAMILY_SPECIALS[family]})
    return tokenizer


def _text_config(spec: TinySpec, vocab_size: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=2 * spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )


def _clip_vision(spec: TinySpec, patch: int) -> dict:
    return dict(
        hidden_size=spec.vision_hidden,
        intermediate_size=2 * spec.vision_hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=spec.image_size,
        patch_size=patch,
    )


def _llava(spec: TinySpec, tokenizer, vocab_size: int):
    from transformers import (
        CLIPImageProcessorPil,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    patch = spec.patch_size or spec.image_size // 4
    config = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", **_clip_vision(spec, patch)),
        text_config=dict(model_type="llama", **_text_config(spec, vocab_size)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    size = spec.image_size
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    return LlavaForConditionalGeneration(config), processor, None


def _llava_next(spec: TinySpec, tokenizer, vocab_size: int):
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
    )

    size, patch = spec.image_size, spec.patch_size or spec.image_size // 4
    pinpoints = [[size, size], [size, 2 * size], [2 * size, size]]
    config = LlavaNextConfig(
        vision_config=dict(model_type="clip_vision_model", **_clip_vision(spec, patch)),
        text_config=dict(model_type="llama", **_text_config(spec, vocab_size)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_grid_pinpoints=pinpoints,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    return LlavaNextForConditionalGeneration(config), processor, None


def _qwen_vl(spec: TinySpec, tokenizer, vocab_size: int, family: Family):
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    head_dim = spec.hidden_size // spec.num_heads
    half = head_dim // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]
    text = _text_config(spec, vocab_size)
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": section,
    }
    ids = {
        name: tokenizer.convert_tokens_to_ids(token)
        for name, token in [
            ("image_token_id", "<|image_pad|>"),
            ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"),
            ("vision_end_token_id", "<|vision_end|>"),
        ]
    }
    vision = dict(patch_size=4, spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    if family is Family.QWEN2_VL:
        vision.update(depth=1, embed_dim=spec.vision_hidden, hidden_size=spec.hidden_size)
        vision.update(num_heads=2, mlp_ratio=2)
        model = Qwen2VLForConditionalGeneration(
            Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
        )
    else:
        vision.update(depth=2, hidden_size=spec.vision_hidden, out_hidden_size=spec.hidden_size)
        vision.update(intermediate_size=2 * spec.vision_hidden, num_heads=2, window_size=16)
        vision.update(fullatt_block_indexes=[1])
        model = Qwen2_5_VLForConditionalGeneration(
            Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
        )
    pixels = spec.image_size * spec.image_size
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=pixels, max_pixels=4 * pixels, patch_size=4, merge_size=2, temporal_patch_size=2
    )
    return model, None, image_processor


def _idefics(spec: TinySpec, tokenizer, vocab_size: int, family: Family):
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
    )

    size, patch = 2 * spec.image_size, spec.image_size // 2
    vision = dict(
        hidden_size=spec.vision_hidden,
        intermediate_size=2 * spec.vision_hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=size,
        patch_size=patch,
    )
    common = dict(
        vision_config=vision,
        text_config=dict(model_type="llama", **_text_config(spec, vocab_size)),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    seq_len = (size // patch) ** 2 // 4
    edge = {"longest_edge": size}
    kwargs = dict(do_image_splitting=False, size=edge, max_image_size=edge)
    if family is Family.IDEFICS3:
        model = Idefics3ForConditionalGeneration(Idefics3Config(**common))
        image_processor = Idefics3ImageProcessorPil(**kwargs)
        processor = Idefics3Processor(image_processor, tokenizer, image_seq_len=seq_len)
        return model, processor, None
    model = SmolVLMForConditionalGeneration(SmolVLMConfig(**common))
    return model, None, SmolVLMImageProcessorPil(**kwargs)


def build_tiny_target(family: Family, directory: str | Path, spec: TinySpec = TinySpec()) -> Path:
    """Write a tiny random-weight model of ``family`` to ``directory``; returns the path.

    When the family's processor cannot be built here (Qwen2-VL, Qwen2.5-VL and SmolVLM
    processors need torchvision for their video half), the tokenizer and image processor are
    saved on their own; :func:`hivis.targets.load_target` then uses hivis's processor
    fallback for that family.
    """
    family = Family(family)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(family, spec)
    vocab_size = len(tokenizer)
    torch.manual_seed(spec.seed)
    if family in (Family.LLAVA, Family.LLAVA_NEXT):
        build = _llava if family is Family.LLAVA else _llava_next
        model, processor, image_processor = build(spec, tokenizer, vocab_size)
    elif family in (Family.QWEN2_VL, Family.QWEN2_5_VL):
        model, processor, image_processor = _qwen_vl(spec, tokenizer, vocab_size, family)
    else:
        model, processor, image_processor = _idefics(spec, tokenizer, vocab_size, family)
    _spread_logits(model)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    if processor is not None:
        processor.save_pretrained(directory)
    else:
        tokenizer.save_pretrained(directory)
        image_processor.save_pretrained(directory)
    return directory


def _spread_logits(model) -> None:
    """Scale the fresh LM head so that random logits are not near-ties.

    With the default 0.02 initialisation every next-token distribution is almost uniform, so
    greedy argmax would hinge on float rounding; a wider head gives decisive, varied choices
    (the property a trained model has) and makes greedy-equality tests meaningful.
    """
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head.mul_(40.0)
