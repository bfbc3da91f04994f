"""``sparknet simulate`` and ``sparknet train --tau auto / --replay-tau`` from the command line."""

import json

import pytest

from sparknet.cli.main import build_parser, main


def test_simulate_writes_round_records(fashion, tmp_path, capsys):
    out = tmp_path / "records.jsonl"
    code = main(["simulate", "--num-workers", "2", "--tau", "3", "--rounds", "2",
                 "--batch-size", "8", "--eval-every", "1", "--train-limit", "400",
                 "--test-limit", "100", "--overhead", "0.5", "--output", str(out)])
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["samples"] for r in records] == [48, 96]
    assert all(0 <= r["test_accuracy"] <= 1 for r in records)
    assert "ms/step" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["simulate", "--overhead", "-1"], "--overhead=-1"),
    (["simulate", "--train-limit", "0"], "--train-limit=0"),
    (["train", "--replay-tau", "/nonexistent/run"], "--replay-tau"),
])
def test_bad_input_is_one_line_before_any_work(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparknet: error:") and message in err and "\n" not in err


def test_tau_flag_takes_a_number_or_auto():
    parser = build_parser()
    assert parser.parse_args(["train", "--tau", "auto"]).__dict__["setting:engine.tau"] == "auto"
    assert parser.parse_args(["train", "--tau", "25"]).__dict__["setting:engine.tau"] == 25
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--tau", "often"])
