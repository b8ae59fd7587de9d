"""Study files are validated completely before any trial runs: one line naming the problem, exit code 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest

from scaletune.cli import main
from scaletune.errors import ScaletuneError
from scaletune.study import load_study_config
from scaletune.study.config import n_planned
from scaletune.study.plan import plan_rung

BASE = """
name = "t"
workload = "study_workloads:bowl"
seeds = [0, 1]
[ladder]
width = [16, 8]
depth = [2]
tokens = [1e5]
params = "12 * depth * width**2"
[space]
lr = { log = ["0.05 / width", "5 / width"], points = 3 }
[strategy]
name = "grid"
"""


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def fails(tmp_path: Path, capsys, text: str, *extra: str) -> str:
    """Run `sweep --dry-run` on the file; it must exit 2 with exactly one line on stderr, returned."""
    path = write(tmp_path, text)
    assert main(["sweep", str(path), "--dry-run", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_valid_file_dry_run_prints_the_plan_smallest_rung_first(tmp_path, capsys):
    path = write(tmp_path, BASE)
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "rung 0 (width=8, depth=2, D=100000, N=1536): 6 trials; lr in [0.00625, 0.625]" in out
    assert "rung 1 (width=16, depth=2, D=100000, N=6144): 6 trials; lr in [0.00313, 0.312]" in out


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace("seeds =", "seed ="), "unknown key 'seed' (did you mean 'seeds'?)"),
        (lambda s: s.replace('name = "grid"', 'name = "grid"\npoints = 3'), "strategy: unknown key 'points'"),
        (
            lambda s: s.replace('"5 / width"', '"0.01 / width"'),
            "space.lr at rung 0 (width=8, depth=2, D=100000, N=1536): empty or inverted range [0.00625, 0.00125]",
        ),
        (lambda s: s.replace('["0.05 / width", "5 / width"]', "[0, 1]"), "space.lr: a log range needs positive bounds"),
        (lambda s: s.replace('"0.05 / width"', '"0.05 / wdth"'), "unknown variable 'wdth'"),
        (lambda s: s.replace('"0.05 / width"', "\"__import__('os')\""), "calls an unknown function"),
        (lambda s: s.replace(", points = 3", ""), "space.lr: the grid strategy needs the number of grid points"),
        (lambda s: s.replace("study_workloads:bowl", "study_workloads:nope"), "workload: module 'study_workloads' has no function 'nope'"),
        (lambda s: s.replace("study_workloads:bowl", "no_such_module:fn"), "workload: cannot import module 'no_such_module'"),
        (lambda s: s.replace('name = "grid"', 'name = "bayes"'), "strategy.name: unknown strategy 'bayes'"),
        (lambda s: s + '[pruner]\nname = "asha"\n', "pruner.name: unknown pruner 'asha'"),
        (lambda s: s + '[pruner]\nname = "median"\nwarmup = 3\n', "pruner 'median': bad options {'warmup': 3}"),
        (lambda s: s + "[budget]\ntrials = 5\n", "budget.trials: the plan has 12 trials (2 rungs), more than the cap of 5"),
        (lambda s: s.replace("tokens = [1e5]", "tokens = [-1e5]"), "ladder.tokens (rung 0): must be positive"),
        (
            lambda s: s.replace("tokens = [1e5]", "tokens_per_param = 20").replace('params = "12 * depth * width**2"', ""),
            "ladder.tokens_per_param needs ladder.params",
        ),
        (lambda s: s.replace("[space]", "[space]\nwidth = { log = [1, 2], points = 2 }"), "space.width: is also a scale variable"),
        (lambda s: s.replace("[ladder]", "[ladder]\nlr = [1]"), "space.lr: is also a scale variable"),
        (lambda s: s + "[fixed]\nlr = 0.1\n", "fixed.lr: is also set by the space, the ladder or the study"),
        (lambda s: s + "[fixed]\nwidth = 3\n", "fixed.width: is also set by"),
        (lambda s: s.replace('name = "t"\n', ""), "missing required key 'name'"),
        (lambda s: s.replace("seeds = [0, 1]", "seeds = [1, 1]"), "seeds: repeated seed in [1, 1]"),
        (lambda s: s + '[storage]\nurl = "sqlite:///no/such/dir/x.db"\n', "folder"),
        (lambda s: s + '[storage]\nurl = "mongodb://x"\n', "storage: unsupported URL 'mongodb://x'"),
        (lambda s: s + '[storage]\nurl = "x.db"\nheartbeat = 10\ngrace = 5\n', "storage.grace (5 s) must exceed storage.heartbeat (10 s)"),
        (
            lambda s: s + '[storage]\nurl = "postgresql://u:secret@127.0.0.1:1/db"\n',
            "storage postgresql://u:***@127.0.0.1:1/db: cannot open",
        ),
        (lambda s: s + "oops = [", "not valid TOML"),
    ],
)
def test_config_errors_are_one_line_exit_2(tmp_path, capsys, edit, message):
    line = fails(tmp_path, capsys, edit(BASE))
    assert message in line
    assert line.startswith("scaletune: error: ")
    # config errors name the file; storage errors name the storage URL (password masked)
    assert str(tmp_path / "study.toml") in line or line.startswith("scaletune: error: storage ")
    assert "secret" not in line


def test_missing_file_and_unreachable_override(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "none.toml")]) == 2
    assert "no such study file" in capsys.readouterr().err
    path = write(tmp_path, BASE)
    assert main(["sweep", str(path), "--dry-run", "--storage", "postgresql://u@127.0.0.1:1/db"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot open" in err[0] and "Connection refused" in err[0]


def test_ladder_forms_and_scale_dependent_ranges(tmp_path):
    explicit = load_study_config(
        {
            "name": "e",
            "workload": "study_workloads:bowl",
            "ladder": {"rungs": [{"width": 64, "D": 4e5}, {"width": 32, "tokens": 2e5}], "params": "width**2"},
            "space": {"lr": {"log": ["1e-3 * (N / 1024) ** -0.5", "1e-1"]}},
            "strategy": {"name": "random", "trials": 3},
        },
        base_dir=tmp_path,
    )
    assert [r.scale for r in explicit.rungs] == [{"width": 32, "D": 2e5, "N": 1024}, {"width": 64, "D": 4e5, "N": 4096}]
    assert explicit.ranges(explicit.rungs[1])["lr"] == pytest.approx((5e-4, 0.1))
    assert explicit.storage.url == f"sqlite:///{tmp_path.resolve() / 'e.db'}"

    ratio = load_study_config(
        {
            "name": "r",
            "workload": "study_workloads:bowl",
            "ladder": {"width": [8, 16], "depth": [1, 2], "tokens_per_param": 20, "params": "12 * depth * width**2"},
            "space": {"lr": {"uniform": [0.1, 0.2]}, "schedule": "cosine"},
            "seeds": 3,
        }
    )
    assert [(r.scale["N"], r.scale["D"]) for r in ratio.rungs] == [(768, 15360), (1536, 30720), (3072, 61440), (6144, 122880)]
    assert ratio.seeds == (0, 1, 2) and n_planned(ratio, ratio.rungs[0]) == 8 * 3


def test_plans_are_deterministic_and_inside_the_ranges():
    raw = {
        "name": "p",
        "workload": "study_workloads:bowl",
        "seeds": [0, 7],
        "ladder": {"width": [8]},
        "space": {"lr": {"log": [1e-3, 1e-1]}, "warmup": {"int": [0, 10]}, "opt": {"choices": ["adam", "sgd"]}},
    }
    for strategy in ("random", "qmc"):
        config = load_study_config(raw | {"strategy": {"name": strategy, "trials": 5, "seed": 3}})
        rung = config.rungs[0]
        a = plan_rung(config, rung, config.ranges(rung))
        b = plan_rung(config, rung, config.ranges(rung))
        assert a == b and len(a) == 10
        assert [s.slot for s in a] == list(range(10)) and [s.seed for s in a] == [0, 7] * 5
        assert all(1e-3 <= s.params["lr"] <= 1e-1 and 0 <= s.params["warmup"] <= 10 for s in a)
        assert a[0].params == a[1].params != a[2].params  # seeds vary fastest within a configuration
    grid = load_study_config(
        raw | {"strategy": "grid", "space": {"lr": {"log": [1e-3, 1e-1], "points": 3}, "warmup": {"int": [0, 10], "points": 2}}}
    )
    slots = plan_rung(grid, grid.rungs[0], grid.ranges(grid.rungs[0]))
    pairs = sorted({(s.params["lr"], s.params["warmup"]) for s in slots})
    assert len(slots) == 12 and [w for _, w in pairs] == [0, 10] * 3
    assert [lr for lr, _ in pairs] == pytest.approx([1e-3, 1e-3, 1e-2, 1e-2, 1e-1, 1e-1])
    tpe = load_study_config(raw | {"strategy": {"name": "tpe", "trials": 4}})
    assert [(s.seed, s.params) for s in plan_rung(tpe, tpe.rungs[0], {})] == [(0, None), (7, None)] * 2


@pytest.mark.parametrize(
    "name, cls",
    [
        ("median", optuna.pruners.MedianPruner),
        ("sha", optuna.pruners.SuccessiveHalvingPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
    ],
)
def test_pruners_by_name_with_options(name, cls):
    config = load_study_config(
        {
            "name": "q",
            "workload": "study_workloads:bowl",
            "ladder": {"width": [8]},
            "space": {"lr": {"log": [1e-3, 1e-1]}},
            "pruner": {"name": name, "min_resource": 2} if name != "median" else {"name": name, "n_warmup_steps": 2},
        }
    )
    assert isinstance(config.make_pruner(), cls)


def test_scale_aware_needs_an_importable_narrowing_function():
    raw = {
        "name": "s",
        "workload": "study_workloads:bowl",
        "ladder": {"width": [8, 16]},
        "space": {"lr": {"log": [1e-3, 1e-1]}},
        "strategy": {"name": "scale-aware", "narrow": "study_workloads:no_such_fn"},
    }
    with pytest.raises(ScaletuneError, match="strategy.narrow: module 'study_workloads' has no function 'no_such_fn'"):
        load_study_config(raw)
    config = load_study_config(raw | {"strategy": {"name": "scale-aware", "narrow": "study_workloads:narrow_around_best"}})
    assert config.strategy.sampler == "qmc"


def test_optuna_objects_and_names_in_a_dict_and_through_with_optuna():
    raw = {
        "name": "o",
        "workload": "study_workloads:bowl",
        "ladder": {"width": [8, 16]},
        "seeds": [0, 1],
        "space": {"lr": {"log": [1e-3, 1e-1]}},
        "strategy": {"name": "random", "trials": 5},
    }
    sampler, pruner = optuna.samplers.TPESampler(seed=3), optuna.pruners.HyperbandPruner(max_resource=9)
    config = load_study_config(raw | {"strategy": {"name": "random", "trials": 5, "sampler": sampler}, "pruner": pruner})
    assert config.sampler is sampler and config.pruner is pruner and config.adaptive
    # each rung study gets its own copy, starting from the seed
    assert isinstance(config.make_sampler(config.rungs[0]), optuna.samplers.TPESampler)
    assert config.make_sampler(config.rungs[0]) is not sampler and config.make_pruner() is not pruner
    assert config.make_pruner()._max_resource == 9
    # a sampler object samples each trial when it starts: 5 trials in all per rung, seeds taken in turn
    assert n_planned(config, config.rungs[0]) == 5
    assert [(s.seed, s.params) for s in plan_rung(config, config.rungs[0], {})] == [(0, None), (1, None)] * 2 + [(0, None)]
    assert config.raw["strategy"]["sampler_object"] == "TPESampler" and config.raw["pruner"] == {"object": "HyperbandPruner"}
    plain = load_study_config(raw)
    assert plain.fingerprint not in (config.fingerprint, plain.with_optuna(sampler="tpe").fingerprint)
    again = plain.with_optuna(sampler=optuna.samplers.TPESampler(seed=4), pruner=pruner)
    assert again.fingerprint == config.fingerprint  # the classes, not the instances
    assert plain.with_optuna(pruner=pruner).fingerprint != plain.fingerprint
    named = plain.with_optuna(sampler="tpe", pruner="median")
    assert (named.strategy.name, named.sampler, named.pruner, named.adaptive) == ("tpe", None, "median", True)
    assert isinstance(named.make_pruner(), optuna.pruners.MedianPruner)
    assert n_planned(named, named.rungs[0]) == 5 and n_planned(plain, plain.rungs[0]) == 10


@pytest.mark.parametrize(
    "strategy, kwargs, message",
    [
        ({"name": "random"}, {"sampler": "annealing"}, "sampler: unknown sampler 'annealing'"),
        ({"name": "random"}, {"sampler": 3}, "sampler: expected a name or an Optuna sampler object"),
        ({"name": "random"}, {"pruner": optuna.samplers.RandomSampler()}, "pruner: expected a name or an Optuna pruner object"),
        ({"name": "random"}, {"pruner": "patient"}, "pruner: unknown pruner 'patient'"),
        ({"name": "grid"}, {"sampler": optuna.samplers.TPESampler()}, "sampler: the grid strategy runs every grid point"),
        (
            {"name": "scale-aware", "narrow": "study_workloads:narrow_around_best"},
            {"sampler": "tpe"},
            "sampler: the scale-aware strategy plans each rung ahead with 'random' or 'qmc'",
        ),
    ],
)
def test_with_optuna_refuses_what_it_cannot_use(strategy, kwargs, message):
    config = load_study_config(
        {
            "name": "o",
            "workload": "study_workloads:bowl",
            "ladder": {"width": [8]},
            "space": {"lr": {"log": [1e-3, 1e-1], "points": 3}},
            "strategy": strategy,
        }
    )
    with pytest.raises(ScaletuneError, match="^" + message) as info:
        config.with_optuna(**kwargs)
    assert info.value.hint is None or "--" not in info.value.hint
