"""The command line's own checks: counts must be positive before anything starts."""

import pytest

from parley.app import cli


def test_up_takes_a_gateway_count():
    assert cli._parser().parse_args(["up", "--gateways", "6"]).gateways == 6
    assert cli._parser().parse_args(["up"]).gateways is None  # parley up's own default


@pytest.mark.parametrize("argv", [["up", "--gateways", "0"], ["up", "--gateways", "-2"],
                                  ["admin", "loadtest-users", "--count", "0", "--out", "x.json"]])
def test_a_count_below_one_is_refused(argv: list[str], capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_:
        cli._parser().parse_args(argv)
    assert exit_.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
