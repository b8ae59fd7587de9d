"""`scaletune` commands of the laws area."""

COMMANDS: list = []
