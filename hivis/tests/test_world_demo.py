"""``hivis demo`` end to end: the shipped world (quick variant) and the fallback."""

from __future__ import annotations

from hivis.cli import main


def test_demo_quick_runs_end_to_end_on_shipped_models(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "shipped tiny LLaVA" in out
    table = [line for line in out.splitlines() if " | " in line and "x |" in line]
    # describe, reasoning, counting on one held-out scene, and its long-form report (the
    # shipped target knows the long-form questions), with the share of its facts right
    assert len(table) == 4
    assert all("| yes       |" in line for line in table)  # identical to the target
    assert "identical to the target's own output: 4/4" in out
    assert "report" in table[-1] and "%" in table[-1]
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_demo_without_assets_explains_and_falls_back(tmp_path, capsys):
    code = main(["demo", "--quick", "--out", str(tmp_path), "--assets", str(tmp_path / "none")])
    assert code == 0
    out = capsys.readouterr().out
    assert "make world" in out and "on-the-fly demo" in out
    assert out.count("| yes ") == 2  # the fallback's two prompts, identical outputs
    assert (tmp_path / "demo.png").stat().st_size > 10_000
