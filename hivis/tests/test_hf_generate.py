"""hivis inside Hugging Face ``generate``: ``custom_generate=hivis.hf.generate`` and the
exported folder give the model's own output; streamers, stop strings, sampling settings and
refusals behave as ``generate``'s own."""

from __future__ import annotations

import pytest
import torch

import hivis
import hivis.hf
from hivis.selfcheck.inputs import random_image, random_prompt
from hivis.targets import Family


def _generate_inputs(target, seed: int, family: Family) -> dict:
    """What a processor gives ``generate`` for one image and prompt (ids + image inputs)."""
    prepared = target.prepare([random_image(seed)], random_prompt(family, seed))
    inputs = dict(input_ids=prepared.input_ids, **prepared.vision_inputs)
    if target.mrope:
        inputs["mm_token_type_ids"] = prepared.visual_mask[None].int()
    return inputs


def _drafter(target, seed: int = 0):
    torch.manual_seed(seed)
    return hivis.HiViSDrafter(target).eval()


class RecordingStreamer:
    """A streamer that keeps every ``put`` (as lists of ids) and counts ``end`` calls."""

    def __init__(self):
        self.puts: list[list[int]] = []
        self.ends = 0

    def put(self, value):
        self.puts.append(value.reshape(-1).tolist())

    def end(self):
        self.ends += 1


@pytest.mark.parametrize("family", list(Family))
def test_custom_generate_equals_greedy_generate(tiny_target, family):
    target = tiny_target(family)
    drafter = _drafter(target)
    for seed in range(2):
        inputs = _generate_inputs(target, seed, family)
        expected = target.model.generate(**inputs, do_sample=False, max_new_tokens=12)
        out = target.model.generate(
            **inputs, custom_generate=hivis.hf.generate, drafter=drafter, max_new_tokens=12
        )
        assert torch.equal(out, expected)


def test_return_dict_carries_metrics_and_drafter_directory_works(tiny_target, tmp_path):
    target = tiny_target(Family.LLAVA)
    drafter = _drafter(target)
    drafter.save(tmp_path / "drafter")
    inputs = _generate_inputs(target, 3, Family.LLAVA)
    expected = target.model.generate(**inputs, do_sample=False, max_new_tokens=10)
    out = target.model.generate(
        **inputs,
        custom_generate=hivis.hf.generate,
        drafter=str(tmp_path / "drafter"),
        max_new_tokens=10,
        return_dict_in_generate=True,
    )
    assert isinstance(out, hivis.hf.HiViSGenerateOutput)
    assert torch.equal(out.sequences, expected)
    assert out.hivis_metrics.new_tokens == expected.shape[1] - inputs["input_ids"].shape[1]


def test_streamer_gets_prompt_then_every_token_once(tiny_target):
    target = tiny_target(Family.LLAVA)
    drafter = _drafter(target)
    inputs = _generate_inputs(target, 4, Family.LLAVA)
    prompt = inputs["input_ids"][0].tolist()
    streamer = RecordingStreamer()
    out = target.model.generate(
        **inputs,
        custom_generate=hivis.hf.generate,
        drafter=drafter,
        max_new_tokens=12,
        streamer=streamer,
    )
    assert streamer.puts[0] == prompt  # generate's own first put
    streamed = [token for put in streamer.puts[1:] for token in put]
    assert streamed == out[0, len(prompt) :].tolist()
    assert streamer.ends == 1
    # The Python API streams the same way.
    image, text = random_image(4), random_prompt(Family.LLAVA, 4)
    api_streamer = RecordingStreamer()
    result = hivis.generate(target, drafter, [image], text, 12, streamer=api_streamer)
    assert api_streamer.puts[0] == prompt
    assert [t for put in api_streamer.puts[1:] for t in put] == result.token_ids
    assert api_streamer.ends == 1


def test_text_streamer_prints_the_answer(tiny_target, capsys):
    from transformers import TextStreamer

    target = tiny_target(Family.LLAVA)
    image, text = random_image(5), random_prompt(Family.LLAVA, 5)
    streamer = TextStreamer(target.tokenizer, skip_prompt=True, skip_special_tokens=True)
    result = hivis.generate(target, _drafter(target), [image], text, 12, streamer=streamer)
    assert capsys.readouterr().out.strip() == result.text.strip()


def test_exported_folder_loads_from_a_local_path(tiny_target, tmp_path):
    target = tiny_target(Family.LLAVA)
    _drafter(target, 1).save(tmp_path / "drafter")
    folder = hivis.hf.export_folder(tmp_path / "drafter", tmp_path / "export")
    assert (folder / "custom_generate" / "generate.py").is_file()
    inputs = _generate_inputs(target, 6, Family.LLAVA)
    expected = target.model.generate(**inputs, do_sample=False, max_new_tokens=10)
    streamer = RecordingStreamer()
    out = target.model.generate(
        **inputs,
        custom_generate=str(folder),
        trust_remote_code=True,
        max_new_tokens=10,
        streamer=streamer,
    )
    assert torch.equal(out, expected)
    prompt = inputs["input_ids"].shape[1]
    assert [t for put in streamer.puts[1:] for t in put] == out[0, prompt:].tolist()


def test_stop_strings_as_hf_with_leading_space(tiny_target):
    """Metaspace tokenizer: a stop string " word" matching the first generated token stops
    there in ``generate``; hivis (speculative, autoregressive, custom_generate) too."""
    target = tiny_target(Family.LLAVA)
    drafter = _drafter(target)
    tokenizer = target.tokenizer
    checked = 0
    for seed in (6, 8, 12):  # prompts whose answer starts with a "▁word" token
        image, text = random_image(seed), random_prompt(Family.LLAVA, seed)
        inputs = _generate_inputs(target, seed, Family.LLAVA)
        prompt = inputs["input_ids"].shape[1]
        full = target.model.generate(**inputs, do_sample=False, max_new_tokens=12)
        first = tokenizer.convert_ids_to_tokens(int(full[0, prompt]))
        if not first.startswith("\u2581") or len(first) < 2:
            continue
        for stop in (" " + first[1:], first[1:]):
            ref = target.model.generate(
                **inputs,
                do_sample=False,
                max_new_tokens=12,
                stop_strings=[stop],
                tokenizer=tokenizer,
            )
            new = ref[0, prompt:].tolist()
            assert (
                hivis.generate(target, drafter, [image], text, 12, stop_strings=[stop]).token_ids
                == new
            )
            assert (
                hivis.autoregressive(target, [image], text, 12, stop_strings=[stop]).token_ids
                == new
            )
            out = target.model.generate(
                **inputs,
                custom_generate=hivis.hf.generate,
                drafter=drafter,
                max_new_tokens=12,
                stop_strings=[stop],
            )
            assert torch.equal(out, ref)
        checked += 1
    assert checked >= 2


def test_sampling_with_top_k_one_is_greedy(tiny_target):
    """do_sample with top_k=1 leaves one token per row: the processors really reach hivis's
    acceptance, so the sampled output is the greedy one."""
    target = tiny_target(Family.LLAVA_NEXT)
    drafter = _drafter(target)
    inputs = _generate_inputs(target, 2, Family.LLAVA_NEXT)
    expected = target.model.generate(**inputs, do_sample=False, max_new_tokens=12)
    for seed in range(3):
        torch.manual_seed(seed)
        out = target.model.generate(
            **inputs,
            custom_generate=hivis.hf.generate,
            drafter=drafter,
            max_new_tokens=12,
            do_sample=True,
            top_k=1,
            temperature=0.7,
        )
        assert torch.equal(out, expected)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(num_beams=2), "num_beams"),
        (dict(do_sample=True, repetition_penalty=1.3), "RepetitionPenalty"),
        (dict(output_scores=True, return_dict_in_generate=True), "output_scores"),
        (dict(drafter=None), "drafter="),
    ],
)
def test_what_cannot_be_honoured_is_refused(tiny_target, settings, message):
    target = tiny_target(Family.LLAVA)
    inputs = _generate_inputs(target, 0, Family.LLAVA)
    kwargs = dict(custom_generate=hivis.hf.generate, drafter=_drafter(target), max_new_tokens=4)
    kwargs.update(settings)
    with pytest.raises((ValueError, TypeError), match=message):
        target.model.generate(**inputs, **kwargs)


def test_batch_and_foreign_drafter_refused(tiny_target):
    target = tiny_target(Family.LLAVA)
    inputs = _generate_inputs(target, 0, Family.LLAVA)
    batch = {k: torch.cat([v, v]) for k, v in inputs.items()}
    with pytest.raises(ValueError, match="one sequence at a time"):
        target.model.generate(
            **batch, custom_generate=hivis.hf.generate, drafter=_drafter(target), max_new_tokens=4
        )
    other = tiny_target(Family.LLAVA_NEXT)
    with pytest.raises(ValueError, match="another model object"):
        target.model.generate(
            **inputs, custom_generate=hivis.hf.generate, drafter=_drafter(other), max_new_tokens=4
        )


def test_shipped_world_through_generate_with_eos_inside_accepted_runs():
    """The trained world models, called the Hugging Face way (processor, chat template,
    ``generate``): identical to greedy ``generate``, also when an EOS id falls inside a run
    of accepted draft tokens, with real acceptance."""
    from hivis.world.data.tasks import TaskType
    from hivis.world.drafters.shipped import DrafterKind, load_world, test_cases

    world = load_world(kinds=(DrafterKind.HIVIS,))
    target, drafter = world.target, world.drafters[DrafterKind.HIVIS]
    model, processor = target.model, target.processor
    for case in test_cases(2, (TaskType.DESCRIBE,)):
        messages = [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": case.question}],
            }
        ]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(images=[case.image], text=text, return_tensors="pt")
        prompt = inputs["input_ids"].shape[1]
        full = model.generate(**inputs, do_sample=False, max_new_tokens=60)
        eos = int(full[0, prompt + 20])  # a token in the middle of the answer
        expected = model.generate(**inputs, do_sample=False, max_new_tokens=60, eos_token_id=eos)
        out = model.generate(
            **inputs,
            custom_generate=hivis.hf.generate,
            drafter=drafter,
            max_new_tokens=60,
            eos_token_id=eos,
            return_dict_in_generate=True,
        )
        assert torch.equal(out.sequences, expected)
        assert expected.shape[1] < full.shape[1]  # the EOS really cut the answer
        assert out.hivis_metrics.acceptance_length > 2.0
