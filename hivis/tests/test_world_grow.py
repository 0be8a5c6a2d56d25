"""Growing a deeper target from a trained one (hivis.world.target.grow): the extended
tokenizer keeps every old encoding, and the grown model starts out computing exactly what the
source computes. The source is a saved tiny world target whose tokenizer has no long-form
word (the shipped target is itself a grown, long-form one)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_world import TINY_WORLD_TARGET
from transformers import AutoTokenizer

from hivis.world.data.long_form import long_form_vocabulary
from hivis.world.data.tokenizer import (
    expresses_long_form,
    extend_tokenizer,
    prompt_text,
    world_corpus,
)
from hivis.world.drafters.shipped import test_cases as shipped_cases
from hivis.world.target.grow import grow_target, layer_sources, load_source
from hivis.world.target.lookup import text_layers as layers_of
from hivis.world.target.model import build_target


@pytest.fixture(scope="module")
def shipped_dir(world_target, tmp_path_factory):
    """A saved random TINY_WORLD_TARGET (2 text layers) and its short-answer tokenizer."""
    model, processor = world_target
    path = tmp_path_factory.mktemp("grow-source")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def extended(shipped_dir):
    base = AutoTokenizer.from_pretrained(shipped_dir)
    return base, extend_tokenizer(base, long_form_vocabulary())


def test_extended_tokenizer_keeps_ids_and_encodings_and_learns_long_form(extended):
    base, ext = extended
    assert not expresses_long_form(base) and expresses_long_form(ext)
    new_vocab = ext.get_vocab()
    assert all(new_vocab[token] == index for token, index in base.get_vocab().items())
    assert len(ext) > len(base)
    for text in world_corpus(40):
        assert ext(text)["input_ids"] == base(text)["input_ids"], text
    assert ext.decode(ext(" a long-form answer, two words.")["input_ids"]) == (
        " a long-form answer, two words."
    )


def test_layer_sources_place_each_source_layer_last_in_its_group():
    assert layer_sources(2, 6) == [(0, False), (0, False), (0, True)] + [
        (1, False),
        (1, False),
        (1, True),
    ]
    with pytest.raises(ValueError, match="multiple of the source's 8"):
        layer_sources(8, 20)


def test_grown_target_starts_with_the_source_logits(shipped_dir, extended):
    _, ext = extended
    source, _ = load_source(shipped_dir)
    text = source.config.text_config
    cfg = dataclasses.replace(TINY_WORLD_TARGET, text_layers=2 * text.num_hidden_layers)
    model, processor = build_target(cfg, ext, seed=0)
    grow_target(model, ext, shipped_dir)
    case = shipped_cases(1)[0]
    inputs = processor(images=[case.image], text=prompt_text(case.question), return_tensors="pt")
    with torch.no_grad():
        grown = model(**inputs).logits[0, -1]
        reference = source(**inputs).logits[0, -1]
    known = reference.shape[0]
    torch.testing.assert_close(grown[:known], reference, rtol=1e-4, atol=1e-4)
    assert torch.all(grown[known:] == 0.0)  # new tokens start at logit 0
    assert grown.argmax() == reference.argmax()
    trainable = [any(p.requires_grad for p in layer.parameters()) for layer in layers_of(model)]
    assert trainable == [True, False] * text.num_hidden_layers  # the source's layers frozen


def test_grow_refuses_a_tokenizer_that_renumbers_the_source(shipped_dir):
    from hivis.world.data.tokenizer import train_tokenizer

    other = train_tokenizer(vocab_size=300, scenes=20)
    model, _ = build_target(dataclasses.replace(TINY_WORLD_TARGET, text_layers=4), other, seed=0)
    with pytest.raises(ValueError, match="does not extend the source's"):
        grow_target(model, other, shipped_dir)
