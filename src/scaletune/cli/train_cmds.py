"""`scaletune` commands of the train area."""

COMMANDS: list = []
