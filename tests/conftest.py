"""Test tiers. `make test` runs every test; `make test-quick` (``pytest -m "not slow"``) leaves out the tests
marked ``slow``: those that train real models, start Ray, Slurm, PostgreSQL or a browser, run a sweep or
the documentation's examples, or take more than about 10 s on a 2-core machine.

Most tests carry ``@pytest.mark.slow`` in their own file. `SLOW` marks, by file or by test (all its
parameters), tests of files whose owners have not marked them there yet; tests marked ``postgres`` or
``slurm`` are slow too (they need a server or a cluster)."""

from __future__ import annotations

import warnings

import pytest

SLOW = frozenset(
    {
        # train real models (the built-in LM, coordinate checks over widths)
        "tests/test_train_run_lm.py::test_run_lm_returns_a_run_table_row_and_learns",
        "tests/test_train_run_lm.py::test_run_lm_is_deterministic_given_seed",
        "tests/test_train_run_lm.py::test_report_callback_prunes",
        "tests/test_train_run_lm.py::test_divergence_is_reported_not_raised",
        "tests/test_train_run_lm.py::test_a_spike_that_recovers_is_not_a_divergence",
        "tests/test_train_run_lm.py::test_variants_train",
        "tests/test_train_signals.py::test_signals_match_a_hand_computation",
        "tests/test_train_signals.py::test_signal_cadence_and_summary",
        "tests/test_train_signals.py::test_z_loss_lowers_the_log_partition",
        "tests/test_train_cli.py::test_train_writes_row_and_curve",
        "tests/test_train_cli.py::test_coord_check_writes_table_and_plot",
        "tests/test_train_param.py::test_coord_check_flat_under_mup_growing_under_sp",
        "tests/test_train_param.py::test_coord_check_catches_a_broken_mup",
        "tests/test_train_param.py::test_depth_coord_check_flat_under_completep_growing_under_mup",
        "tests/test_curves_lm.py",
        # run a sweep (spawned worker processes)
        "tests/test_api.py::test_load_runs_reads_a_study",
        # a browser
        "tests/test_report.py::test_page_renders_in_headless_chromium",
        # the documentation's examples (every checked command of every page) and its strict build
        "tests/test_docs.py::test_page_examples",
        "tests/test_docs.py::test_mkdocs_build_strict",
    }
)


def _listed(nodeid: str) -> bool:
    path, _, name = nodeid.partition("::")
    return path in SLOW or f"{path}::{name.partition('[')[0]}" in SLOW


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _listed(item.nodeid) or item.get_closest_marker("postgres") or item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.slow)
    # an entry of a collected file that names no test (renamed?) would silently leave a slow test in the quick tier
    collected = {i.nodeid.partition("::")[0] for i in items}
    names = {i.nodeid.partition("[")[0] for i in items}
    stale = sorted(e for e in SLOW if "::" in e and e.partition("::")[0] in collected and e not in names)
    if stale and not config.getoption("keyword") and not config.getoption("deselect"):
        warnings.warn(pytest.PytestConfigWarning(f"tests/conftest.py SLOW names no collected test: {', '.join(stale)}"))
