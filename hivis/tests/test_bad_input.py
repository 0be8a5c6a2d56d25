"""Bad input gets a clear error before any compute - never a silent wrong answer."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

import hivis
from hivis.cli import main
from hivis.selfcheck.inputs import random_image
from hivis.targets import Family, UnsupportedFamilyError, load_target
from hivis.tree import TreeConfig


@pytest.fixture()
def llava(tiny_target):
    target = tiny_target(Family.LLAVA)
    calls = []
    handle = target.model.register_forward_pre_hook(lambda *a: calls.append(1))
    inner = target.language_model.register_forward_pre_hook(lambda *a: calls.append(1))
    yield target, calls
    handle.remove()
    inner.remove()


@pytest.fixture()
def drafter(tiny_target):
    return hivis.HiViSDrafter(tiny_target(Family.LLAVA))


@pytest.mark.parametrize(
    ("images", "prompt", "kwargs", "message"),
    [
        ([random_image(0)], "what is the red", {}, "no image placeholder"),
        ([random_image(0)] * 2, "<image> what", {}, "1 image placeholder.*2 image"),
        ([], "<image> what", {}, "no image given"),
        ([random_image(0)], "   ", {}, "prompt is empty"),
        ([random_image(0)], "<image> what", {"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ([random_image(0)], "<image> what", {"temperature": -0.5}, "temperature must be"),
        ([random_image(0)], "<image> what", {"temperature": float("nan")}, "temperature must"),
        (["/no/such/image.png"], "<image> what", {}, "cannot read image"),
    ],
)
def test_bad_generate_arguments(llava, drafter, images, prompt, kwargs, message):
    target, calls = llava
    with pytest.raises(ValueError, match=message):
        hivis.generate(target, drafter, images, prompt, **kwargs)
    assert calls == []  # refused before any forward pass


def test_unreadable_image_file(llava, drafter, tmp_path):
    target, calls = llava
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        hivis.generate(target, drafter, [str(bad)], "<image> what")
    assert calls == []


def test_bad_tree_settings():
    with pytest.raises(ValueError, match="tree depth must be a positive integer"):
        hivis.TreeConfig(total_tokens=4, depth=0, top_k=2)
    with pytest.raises(ValueError, match="min_prob"):
        hivis.TreeConfig(min_prob=1.5)


def test_nan_logits_raise(target_dir, drafter):
    target = load_target(target_dir(Family.LLAVA))  # a private copy we may break
    with torch.no_grad():
        target.lm_head.weight[3, 0] = float("nan")
    with pytest.raises(hivis.NonFiniteLogitsError, match="NaN"):
        hivis.generate(target, hivis.HiViSDrafter(target), [random_image(0)], "<image> what")
    with pytest.raises(hivis.NonFiniteLogitsError):
        hivis.autoregressive(target, [random_image(0)], "<image> what")


def test_nan_inside_tree_verification_raises(target_dir):
    from hivis.acceptance import accept_greedy
    from hivis.tree import chain_tree

    logits = torch.zeros(3, 5)
    logits[1, 2] = float("nan")
    with pytest.raises(hivis.NonFiniteLogitsError):
        accept_greedy(chain_tree(0, [1, 2]), logits)


def test_unsupported_family_lists_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "blip-2"}))
    with pytest.raises(UnsupportedFamilyError) as err:
        load_target(tmp_path)
    for family in Family:
        assert family.value in str(err.value)


def test_cli_reports_errors(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "blip-2"}))
    random_image(0).save(tmp_path / "x.png")
    code = main(
        [
            "generate",
            "--target",
            str(tmp_path),
            "--drafter",
            str(tmp_path),
            "--image",
            str(tmp_path / "x.png"),
            "--prompt",
            "<image> hi",
        ]
    )
    assert code == 2
    assert "not supported by hivis" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            [
                "generate",
                "--target",
                "t",
                "--drafter",
                "d",
                "--image",
                "i",
                "--prompt",
                "p",
                "--tree",
                "10,4",
            ]
        )
    assert "TOTAL,DEPTH,TOPK" in capsys.readouterr().err


def test_tree_option_takes_an_optional_confidence_floor():
    from hivis.cli import parse_tree

    assert parse_tree("16,8,2,0.1") == TreeConfig(16, 8, 2, min_prob=0.1)
    assert parse_tree("10,4,3") == TreeConfig(10, 4, 3)
    for bad in ("16,8,2,x", "16,8,2,0.1,3", "16,8"):
        with pytest.raises(argparse.ArgumentTypeError, match="TOTAL,DEPTH,TOPK"):
            parse_tree(bad)
