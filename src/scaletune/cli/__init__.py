"""The `scaletune` command line: thin wrappers that parse arguments, call the library and print.

Every user mistake (a `ScaletuneError` or a click usage error) becomes one line on stderr and exit code 2.
Each area registers its commands in its own module; heavy imports (torch, ray) happen inside commands
so that `scaletune fit` works without torch installed.
"""

from __future__ import annotations

import sys

import click

from scaletune import __version__
from scaletune.errors import ScaletuneError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="scaletune")
def cli() -> None:
    """Predictable scaling of neural-network training."""


def _register() -> None:
    from scaletune.cli import curves_cmds, hparams_cmds, import_cmds, laws_cmds, report_cmds, stability_cmds, study_cmds, train_cmds

    for module in (laws_cmds, train_cmds, study_cmds, hparams_cmds, curves_cmds, stability_cmds, import_cmds, report_cmds):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one line and exit code 2."""
    try:
        cli.main(args=argv, prog_name="scaletune", standalone_mode=False)
    except ScaletuneError as exc:
        hint = f" (hint: {exc.hint})" if exc.hint else ""
        click.echo(f"scaletune: error: {exc}{hint}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("scaletune: aborted", err=True)
        return 130
    except ModuleNotFoundError as exc:  # an optional extra (torch for train, coord-check, demo, ...) not installed
        from scaletune.cli._extras import missing_extra

        if (line := missing_extra(exc)) is None:
            raise
        click.echo(f"scaletune: error: {line}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"scaletune: error: {exc.format_message()}", err=True)
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
