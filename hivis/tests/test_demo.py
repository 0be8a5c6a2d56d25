"""``hivis demo`` end to end (the quick variant): builds, trains, compares, plots."""

from hivis.cli import main


def test_demo_quick_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "identical" in out and "stage2" in out
    assert out.count("| yes ") == 2
    assert (tmp_path / "demo.png").stat().st_size > 10_000
