"""The top-level API (`import scaletune as st`): its docstring examples run (doctest), the verbs are the ones
`scaletune.api` defines, and importing scaletune and the analysis packages never imports torch."""

from __future__ import annotations

import doctest
import importlib
import json
import subprocess
import sys

import pytest

import scaletune
from scaletune import api
from scaletune.errors import ScaletuneError

# Modules whose examples run as written. scaletune.curves and scaletune.study show sketches that read a file the
# reader brings / run a whole sweep; their runnable versions are st.load_curves / st.fit_curves / st.run_study.
DOCTESTED = ["scaletune", "scaletune.api", "scaletune.workloads", "scaletune.curves.pruner"]


@pytest.mark.parametrize("name", DOCTESTED)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    if name.startswith("scaletune") and name != "scaletune.curves.pruner":
        assert result.attempted > 0


def test_verbs_are_the_api_module():
    assert scaletune.__all__ == ["ScaletuneError", "__version__", *api.__all__]  # the verbs are listed once, in api
    for verb in api.__all__:
        assert getattr(scaletune, verb) is getattr(api, verb)
        assert getattr(api, verb).__doc__
    assert set(api.__all__) <= set(dir(scaletune))
    with pytest.raises(AttributeError):
        scaletune.no_such_verb  # noqa: B018


def test_import_is_light_and_torch_free():
    code = (
        "import sys, scaletune, scaletune.api, scaletune.laws, scaletune.hparams, scaletune.curves, scaletune.stability;"
        "import json; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'ray', 'submitit', 'plotly', 'wandb', 'tensorboard', 'optuna'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
    bare = subprocess.run(
        [sys.executable, "-c", "import sys, scaletune; print('pandas' in sys.modules, 'scipy' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert bare == ["False", "False"]  # the verbs load their packages on first use


def test_verbs_agree_with_the_library():
    from scaletune.laws import fit as fit_law

    runs = api.load_runs(api.example("porian"))
    kept = runs[runs["tokens_per_param"] >= 5]
    r = scaletune.fit(kept, bootstrap=0)
    assert r.params_ == fit_law("chinchilla", kept, bootstrap=0).params_  # the same fit, data first
    assert scaletune.fit(api.example("porian"), "compute", bootstrap=0).law == "compute"  # a path is read as a run table
    preds = scaletune.predict(r, {"N": [1e8, 1e9], "D": [2e9, 2e10]})
    assert preds.value.tolist() == pytest.approx(r.predict({"N": [1e8, 1e9], "D": [2e9, 2e10]}).tolist())
    assert preds.extrapolation[1] > 1 and preds.method == "point"  # no bootstrap, no interval
    deepseek = scaletune.allocate("published:deepseek", 1e21)
    assert deepseek.N_star == pytest.approx(0.1715 * 1e21**0.5243)
    with pytest.raises(ScaletuneError, match="unknown example 'nope'"):
        api.example("nope")


def test_load_runs_reads_a_study(tmp_path):
    from test_study_run import toml_file

    study = toml_file(
        tmp_path, "api", "api.db", seeds="[0]", widths="[8]", space='lr = { log = ["0.05 / width", "5 / width"], points = 3 }'
    )
    result = scaletune.run_study(study, workers=1, progress=False)
    assert result.complete
    runs = scaletune.load_runs(study, "rate=lr")
    assert len(runs) == 3 and "rate" in runs.columns and set(runs["status"]) == {"ok"}
    assert len(scaletune.load_runs("api", storage=f"sqlite:///{tmp_path / 'api.db'}")) == 3
