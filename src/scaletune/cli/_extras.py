"""Optional dependencies: which extra of ``pip install 'scaletune[EXTRA]'`` provides a missing module."""

from __future__ import annotations

EXTRAS = {
    "torch": "train",
    "ray": "ray",
    "submitit": "slurm",
    "plotly": "report",
    "tensorboard": "importers",
    "wandb": "importers",
    "yaml": "importers",
    "psycopg2": "postgres",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """One line naming the extra to install when ``exc`` is an optional dependency missing; None otherwise
    (a missing core dependency or a bug stays a traceback)."""
    module = (exc.name or "").partition(".")[0]
    if module not in EXTRAS:
        return None
    return f"this command needs {module}, which is not installed: pip install 'scaletune[{EXTRAS[module]}]'"
