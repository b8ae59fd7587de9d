"""`scaletune` commands of the study area."""

COMMANDS: list = []
