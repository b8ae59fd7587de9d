"""Every schedule kind has exact values at known steps; specs round-trip; bad specs name the problem."""

import math

import numpy as np
import pytest

from scaletune.errors import ScaletuneError
from scaletune.schedules import Schedule

PEAK = 1e-3


def lr(spec: str, step):
    return Schedule.parse(spec)(step)


def test_warmup_is_linear_to_the_peak():
    s = Schedule.parse("constant:steps=100,lr=1e-3,warmup=10")
    np.testing.assert_allclose(s([0, 4, 9, 10, 99]), [1e-4, 5e-4, 1e-3, 1e-3, 1e-3])


def test_cosine_linear_and_rex_exact_values():
    # progress p = (s - warmup) / (steps - warmup); here warmup = 0, steps = 100
    assert lr("cosine:steps=100,lr=1e-3,final=0.1", 50) == pytest.approx(1e-4 + 0.9e-3 * 0.5)
    assert lr("cosine:steps=100,lr=1e-3,final=0.1", 100) == pytest.approx(1e-4)
    assert lr("cosine:steps=100,lr=1e-3,final=0.1", 25) == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr("linear:steps=100,lr=1e-3", 75) == pytest.approx(2.5e-4)
    # REX: (1 - p) / (0.5 + 0.5 (1 - p)); at p = 0.5: 0.5 / 0.75
    assert lr("rex:steps=100,lr=1e-3", 50) == pytest.approx(1e-3 * 0.5 / 0.75)


@pytest.mark.parametrize("shape, expected", [
    ("linear", 1e-3 - 0.5 * (1e-3 - 1e-4)),
    ("1-sqrt", 1e-4 + 0.9e-3 * (1 - math.sqrt(0.5))),
    ("cosine", 1e-4 + 0.9e-3 * 0.5),
    ("exp", 1e-3 * 0.1 ** 0.5),
])
def test_wsd_cooldown_shapes_half_way(shape, expected):
    spec = f"wsd:steps=1000,lr=1e-3,warmup=100,cooldown=0.2,shape={shape},final=0.1"
    s = Schedule.parse(spec)
    assert s.decay_step == 800
    assert s(799) == pytest.approx(1e-3)  # stable phase
    assert s(900) == pytest.approx(expected)  # half-way through the cooldown
    assert s(1000) == pytest.approx(1e-4)


def test_wsd_decay_start_in_steps_and_two_stage_and_step():
    assert lr("wsd:steps=24000,lr=3e-4,decay_start=20000,shape=exp,final=0.1", 22000) == pytest.approx(3e-4 * 0.1 ** 0.5)
    np.testing.assert_allclose(lr("twostage:steps=16000,lr=3e-4,switch=8000,ratio=0.3", [7999, 8000]), [3e-4, 9e-5])
    np.testing.assert_allclose(lr("step:steps=1000,lr=1e-3,milestones=500|750,gamma=0.1", [499, 500, 749, 750]), [1e-3, 1e-4, 1e-4, 1e-5])


def test_power_scheduler_follows_a_n_to_the_minus_b():
    s = Schedule.parse("power:steps=10000,lr=0.02,a=4,b=0.51,tokens_per_step=1000,cooldown=0.1")
    # before the cooldown: min(peak, a * tokens^-b)
    assert s(10) == pytest.approx(0.02)
    assert s(5000) == pytest.approx(4 * (5000 * 1000) ** -0.51)
    assert s(9999) < s(8999)  # exponential cooldown over the last 10%


@pytest.mark.parametrize("spec", [
    "cosine:steps=24000,lr=0.0003,warmup=2160,final=0.1",
    "wsd:steps=1000,lr=0.001,cooldown=0.3,shape=1-sqrt",
    "step:steps=1000,lr=0.001,milestones=500|750",
])
def test_spec_round_trip(spec):
    s = Schedule.parse(spec)
    assert Schedule.parse(s.spec()) == s
    assert len(s.lrs()) == s.steps


@pytest.mark.parametrize("spec, message", [
    ("sawtooth:steps=10,lr=1", "unknown schedule kind 'sawtooth'"),
    ("cosine:lr=1", "needs steps= and lr="),
    ("cosine:steps=10,lr=1,warmup=10", r"warmup=10 must be in \[0, steps=10\)"),
    ("cosine:steps=10,lr=abc", "lr='abc' is not a number"),
    ("wsd:steps=10,lr=1,shape=exp", "needs final > 0"),
    ("cosine:steps=10,lr=1,speed=3", "cannot use 'speed=3'"),
])
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(ScaletuneError, match=message):
        Schedule.parse(spec)
