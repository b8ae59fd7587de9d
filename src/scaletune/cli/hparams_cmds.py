"""`scaletune` commands of the hparams area."""

COMMANDS: list = []
