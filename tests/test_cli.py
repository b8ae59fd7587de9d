"""The CLI root: user errors are one line on stderr and exit code 2."""

import pytest

from scaletune.cli import main


def test_unknown_command_is_one_line_exit_2(capsys):
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No such command" in err[0]


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "scaletune" in capsys.readouterr().out


@pytest.mark.slow  # two fits of the 25M curves, one with the published protocol: ~3 min
def test_curves_fit_method_option_reaches_the_fitter(capsys):
    import json
    from pathlib import Path

    data = Path(__file__).parent / "data" / "multipowerlaw"
    files = [str(data / "csv_25" / f"{n}.csv") for n in ("cosine_24000", "constant_24000", "wsdcon_9")]
    used = {}
    for method in ("luo2025", "lbfgs"):
        assert (
            main(
                [
                    "curves",
                    "fit",
                    *files,
                    "--schedules",
                    str(data / "schedules.csv"),
                    "--max-step",
                    "24000",
                    "--boot",
                    "0",
                    "--method",
                    method,
                    "--json",
                ]
            )
            == 0
        )
        fit = json.loads(capsys.readouterr().out)
        used[method] = (fit["diagnostics"]["method"], fit["params_"]["beta"])
    assert used["luo2025"][0] == "luo2025" and used["lbfgs"][0] == "lbfgs"
    assert used["luo2025"][1] != used["lbfgs"][1]
    assert main(["curves", "fit", *files, "--method", "adam"]) == 2
