"""`scaletune` commands of the curves area."""

COMMANDS: list = []
