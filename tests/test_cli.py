"""The CLI root: user errors are one line on stderr and exit code 2."""

from scaletune.cli import main


def test_unknown_command_is_one_line_exit_2(capsys):
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No such command" in err[0]


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "scaletune" in capsys.readouterr().out
