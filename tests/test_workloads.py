"""The workload interface without a sweep: the built-in LM, a Python function and a command template, as the
study sees them (validate, count_params, run, schedule_spec, resources)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from scaletune.errors import ScaletuneError
from scaletune.study import load_study_config
from scaletune.workloads import CommandWorkload, FunctionWorkload, LMWorkload, Resources
from scaletune.workloads._command import MAX_CURVE, _thin


def test_lm_workload_counts_validates_and_names_its_schedule():
    pytest.importorskip("torch")
    lm = LMWorkload()
    config = {"width": 32, "depth": 2, "D": 8192.0, "N": 1.0, "lr": 1e-3, "batch_size": 1024, "seq_len": 64, "seed": 0, "threads": 1}
    assert lm.count_params(config) == 43168  # total, embeddings included (as in test_study_lm)
    lm.validate([config])
    spec = lm.schedule_spec(config)
    assert "steps=8" in spec and "lr=0.001" in spec  # 8192 tokens // 1024 per step
    with pytest.raises(ScaletuneError, match="less than one batch"):
        lm.validate([config, {**config, "D": 512.0}])
    assert lm.schedule_spec({**config, "D": 512.0}) is None


def test_a_function_workload_passes_full_schedule_specs_to_pruners_and_nothing_else():
    fn = FunctionWorkload("study_workloads:noop")
    assert fn.schedule_spec({"schedule": "cosine:steps=100,lr=0.001"}) == "cosine:steps=100,lr=0.001"
    free = "free:10=0.001|100=0.0001"  # what schedule optimisation writes: knots name steps and rates
    assert fn.schedule_spec({"schedule": free}) == free
    assert fn.schedule_spec({"schedule": "table:0=0.001|50=0.0005"}) == "table:0=0.001|50=0.0005"
    assert fn.schedule_spec({"schedule": "cosine"}) is None  # steps and lr unknown: nothing to predict with
    assert fn.schedule_spec({"lr": 1e-3}) is None


def test_study_config_builds_the_workload_and_reports_bad_lm_configs_at_their_rung(tmp_path):
    pytest.importorskip("torch")
    raw = {
        "name": "w",
        "workload": "lm",
        "fixed": {"batch_size": 1024, "seq_len": 64},
        "ladder": {"width": [32], "depth": [2], "tokens": [8192]},
        "space": {"lr": {"log": [1e-3, 1e-2]}},
    }
    config = load_study_config(raw, base_dir=tmp_path)
    assert isinstance(config.workload, LMWorkload) and config.rungs[0].scale["N"] == 43168
    assert config.workload.resources == Resources(cpus=1, gpus=0)
    bad = {**raw, "space": {**raw["space"], "param": {"choices": ["mup", "bogus"]}}}  # each choice is checked
    with pytest.raises(
        ScaletuneError,
        match=r"workload lm at rung 0 \(width=32, depth=2, D=8192, N=43168\): "
        r"unknown parameterisation param='bogus'",
    ):
        load_study_config(bad, base_dir=tmp_path)


def test_function_workload_keeps_the_old_contract():
    fn = FunctionWorkload("study_workloads:noop", Resources(cpus=2))
    assert fn.name == "study_workloads:noop" and fn.resources.cpus == 2
    assert fn.run({"x": 0.25}, lambda step, value: False) == {"loss": 0.25}
    assert fn.count_params({"width": 8}) is None
    assert fn.schedule_spec({"schedule": "cosine:steps=100,lr=0.01"}) == "cosine:steps=100,lr=0.01"
    assert fn.schedule_spec({"schedule": "cosine"}) is None
    with pytest.raises(ScaletuneError, match="has no function 'nope'"):
        FunctionWorkload("study_workloads:nope")


def test_command_template_quotes_formats_and_names_the_environment(tmp_path):
    cmd = CommandWorkload(
        "train --lr={lr:.2e} --width={width} --name={name} --flag={flag} --gpus={gpus}", cwd=tmp_path, resources=Resources(gpus=2)
    )
    config = {"lr": 0.00123, "width": 64.0, "name": "my run; echo $HOME", "flag": True, "warm-up": 0.1}
    assert cmd.render(config) == "train --lr=1.23e-03 --width=64 --name='my run; echo $HOME' --flag=true --gpus=2"
    env = cmd.environment(config, tmp_path / "t")
    assert (env["SCALETUNE_LR"], env["SCALETUNE_WIDTH"], env["SCALETUNE_WARM_UP"], env["SCALETUNE_GPUS"]) == ("0.00123", "64", "0.1", "2")
    assert env["SCALETUNE_CONFIG"] == str(tmp_path / "t" / "config.json")
    with pytest.raises(ScaletuneError, match=r"unknown variable \{depth\}"):
        CommandWorkload("train {depth}").render(config)
    with pytest.raises(ScaletuneError, match="cannot parse template"):
        CommandWorkload("train {lr")
    CommandWorkload("FOO=1 sh -c true {lr}", cwd=tmp_path).validate([config])  # VAR=value prefixes skipped
    with pytest.raises(ScaletuneError, match="program './run.sh' of the command not found"):
        CommandWorkload("./run.sh {lr}", cwd=tmp_path).validate([config])
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    CommandWorkload("./run.sh {lr}", cwd=tmp_path).validate([config])


def test_long_curves_are_thinned_evenly_and_keep_their_ends():
    curve = [{"step": i, "val_loss": 1.0 / (i + 1)} for i in range(10 * MAX_CURVE + 7)]
    thin = _thin(curve)
    assert len(thin) == MAX_CURVE and thin[0] is curve[0] and thin[-1] is curve[-1]
    steps = [p["step"] for p in thin]
    gaps = {b - a for a, b in zip(steps, steps[1:])}
    assert max(gaps) - min(gaps) <= 1 and all(math.isfinite(p["val_loss"]) for p in thin)
    assert _thin(curve[:5]) == curve[:5]


def test_default_workdir_is_next_to_the_study_file(tmp_path):
    config = load_study_config(
        {"name": "d", "workload": {"command": "true {lr}"}, "ladder": {"width": [8]}, "space": {"lr": {"log": [1e-3, 1e-2]}}},
        base_dir=tmp_path,
    )
    assert isinstance(config.workload, CommandWorkload)
    assert config.workload.workdir == tmp_path / "d-runs" and config.workload.cwd == Path(tmp_path)
    assert config.workload.timeout is None and config.workload.kill_grace == 10.0
