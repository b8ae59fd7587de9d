#!/usr/bin/env bash
# The documentation site builds without a warning (broken links, missing pages, docstrings mkdocstrings cannot
# render). tests/test_docs.py runs the same build and the checked examples of the pages.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/mkdocs build --strict -d /tmp/scaletune-site
