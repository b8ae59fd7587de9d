"""Every schedule kind has exact values at known steps; every kind, and one registered here, round-trips through its
spec; bad specs name the problem."""

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest

import scaletune.schedules
from scaletune.curves import curve_from_arrays, fit_curves, get_curve_law
from scaletune.curves.laws import prepare
from scaletune.errors import ScaletuneError
from scaletune.schedules import (
    WSD_SHAPES,
    ConstantSchedule,
    FreeSchedule,
    Schedule,
    TableSchedule,
    WSDSchedule,
    parse_schedule,
    register_schedule,
    schedule_kinds,
)

BUILT_IN = ("constant", "cosine", "linear", "wsd", "power", "rex", "step", "twostage", "free", "table")

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


@pytest.mark.parametrize(
    "shape, expected",
    [
        ("linear", 1e-3 - 0.5 * (1e-3 - 1e-4)),
        ("1-sqrt", 1e-4 + 0.9e-3 * (1 - math.sqrt(0.5))),
        ("cosine", 1e-4 + 0.9e-3 * 0.5),
        ("exp", 1e-3 * 0.1**0.5),
    ],
)
def test_wsd_cooldown_shapes_half_way(shape, expected):
    spec = f"wsd:steps=1000,lr=1e-3,warmup=100,cooldown=0.2,shape={shape},final=0.1"
    s = Schedule.parse(spec)
    assert s.decay_step == 800
    assert s(799) == pytest.approx(1e-3)  # stable phase
    assert s(900) == pytest.approx(expected)  # half-way through the cooldown
    assert s(1000) == pytest.approx(1e-4)


def test_wsd_decay_start_in_steps_and_two_stage_and_step():
    assert lr("wsd:steps=24000,lr=3e-4,decay_start=20000,shape=exp,final=0.1", 22000) == pytest.approx(3e-4 * 0.1**0.5)
    np.testing.assert_allclose(lr("twostage:steps=16000,lr=3e-4,switch=8000,ratio=0.3", [7999, 8000]), [3e-4, 9e-5])
    np.testing.assert_allclose(lr("step:steps=1000,lr=1e-3,milestones=500|750,gamma=0.1", [499, 500, 749, 750]), [1e-3, 1e-4, 1e-4, 1e-5])


def test_power_scheduler_follows_a_n_to_the_minus_b():
    s = Schedule.parse("power:steps=10000,lr=0.02,a=4,b=0.51,tokens_per_step=1000,cooldown=0.1")
    # before the cooldown: min(peak, a * tokens^-b)
    assert s(10) == pytest.approx(0.02)
    assert s(5000) == pytest.approx(4 * (5000 * 1000) ** -0.51)
    assert s(9999) < s(8999)  # exponential cooldown over the last 10%


@pytest.mark.parametrize(
    "spec",
    [
        "cosine:steps=24000,lr=0.0003,warmup=2160,final=0.1",
        "wsd:steps=1000,lr=0.001,cooldown=0.3,shape=1-sqrt",
        "step:steps=1000,lr=0.001,milestones=500|750",
    ],
)
def test_spec_round_trip(spec):
    s = Schedule.parse(spec)
    assert Schedule.parse(s.spec()) == s
    assert len(s.lrs()) == s.steps


@pytest.mark.parametrize(
    "spec, message",
    [
        ("sawtooth:steps=10,lr=1", "unknown schedule kind 'sawtooth'"),
        ("cosine:lr=1", "needs steps= and lr="),
        ("cosine:steps=10,lr=1,warmup=10", r"warmup=10 must be in \[0, steps=10\)"),
        ("cosine:steps=10,lr=abc", "lr='abc' is not a number"),
        ("wsd:steps=10,lr=1,shape=exp", "needs final > 0"),
        ("cosine:steps=10,lr=1,speed=3", "cannot use 'speed=3'"),
    ],
)
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(ScaletuneError, match=message):
        Schedule.parse(spec)


# --- the registry: every kind round-trips through its spec -------------------------------------------------------


def _random_schedules(kind: str, rng: np.random.Generator, n: int = 12) -> list[Schedule]:
    """``n`` valid schedules of ``kind`` with random keys (steps >= 1000, so the 1,000-step comparison is inside)."""
    out = []
    for _ in range(n):
        steps = int(rng.integers(1000, 30000))
        base = {"steps": steps, "lr": float(rng.uniform(1e-5, 1e-2)), "warmup": int(rng.integers(0, steps // 5))}
        final = float(rng.choice([0.0, rng.uniform(0.01, 0.5)]))
        cooldown = float(rng.choice([rng.uniform(0.01, 0.6), rng.integers(10, steps // 2)]))
        if kind == "constant" or kind == "rex":
            s = Schedule(kind=kind, **base)
        elif kind in ("cosine", "linear"):
            s = Schedule(kind=kind, final=final, **base)
        elif kind == "wsd":
            shape = str(rng.choice(WSD_SHAPES))
            start = {"decay_start": int(rng.integers(base["warmup"], steps))} if rng.random() < 0.3 else {"cooldown": cooldown}
            s = Schedule(kind="wsd", shape=shape, final=final if shape != "exp" else max(final, 0.05), **start, **base)
        elif kind == "power":
            s = Schedule(
                kind="power",
                a=float(rng.uniform(0.1, 10)),
                b=float(rng.uniform(0.2, 0.8)),
                final=final,
                tokens_per_step=float(rng.integers(1, 10000)),
                cooldown=cooldown,
                **base,
            )
        elif kind == "step":
            s = Schedule(
                kind="step",
                milestones=tuple(sorted(int(m) for m in rng.integers(1, steps, 3))),
                gamma=float(rng.uniform(0.05, 0.9)),
                **base,
            )
        elif kind == "twostage":
            s = Schedule(kind="twostage", switch=int(rng.integers(1, steps)), ratio=float(rng.uniform(0.01, 1)), **base)
        elif kind == "free":  # as schedule optimisation writes them: knots from the end of warm-up, rates non-increasing
            knots = np.unique(np.r_[base["warmup"], rng.integers(base["warmup"] + 1, steps, 10)])
            levels = base["lr"] * np.cumprod(np.r_[1.0, 1 - rng.uniform(0, 0.9, len(knots) - 1)])
            s = FreeSchedule(knots=tuple(int(k) for k in knots), levels=tuple(float(v) for v in levels))
        elif kind == "table":
            rows = np.unique(np.r_[0, rng.integers(1, steps, 20), steps - 1])
            s = TableSchedule(tuple(int(r) for r in rows), tuple(float(v) for v in rng.uniform(1e-5, 1e-3, len(rows))))
        else:
            raise AssertionError(f"no generator for schedule kind {kind}")
        out.append(s)
    return out


@pytest.mark.parametrize("kind", BUILT_IN)
def test_every_kind_round_trips_through_its_spec(kind):
    for s in _random_schedules(kind, np.random.default_rng(len(kind))):
        back = parse_schedule(s.spec())
        assert type(back) is type(s) and back.kind == kind and back == s
        np.testing.assert_array_equal(back.lrs(1000), s.lrs(1000))
        assert back.spec() == s.spec()


def test_the_built_in_kinds_are_registered():
    assert set(BUILT_IN) <= set(schedule_kinds())
    with pytest.raises(ScaletuneError, match=r"unknown schedule kind 'sawtooth' \(known: constant, cosine, .*free, table"):
        parse_schedule("sawtooth:steps=10,lr=1")


def test_no_kind_carries_another_kinds_keys():
    with pytest.raises(ScaletuneError, match=r"cannot use 'cooldown=0.3' \(keys: steps, lr, warmup, final\)"):
        parse_schedule("cosine:steps=1000,lr=1e-3,cooldown=0.3")
    with pytest.raises(ScaletuneError, match=r"cannot use 'shape=exp' \(keys: steps, lr, warmup, final, cooldown, decay_start, a, b"):
        parse_schedule("power:steps=1000,lr=1e-3,shape=exp")
    assert {f for f in vars(parse_schedule("step:steps=10,lr=1,milestones=5"))} == {"steps", "lr", "warmup", "milestones", "gamma"}
    with pytest.raises(ScaletuneError, match=r"needs steps= and lr= and switch= .*switch= missing"):
        parse_schedule("twostage:steps=10,lr=1")


def test_the_optimisers_free_spec_parses_back_to_its_rates():
    """`schedule optimise --family free` writes knots as STEP=RATE (4 significant digits): a linear warm-up to the
    first knot, then straight lines between the knots; steps, peak and warm-up follow from the knots."""
    spec = "free:100=0.001|500=0.0008|900=0.0002|999=1e-05"
    s = parse_schedule(spec, steps=5, lr=3.0, warmup=7)  # a caller's defaults do not apply: the knots give all three
    assert (s.kind, s.steps, s.lr, s.warmup) == ("free", 1000, 1e-3, 100)
    np.testing.assert_allclose(
        s([0, 49, 99, 100, 300, 500, 700, 999, 1000, 5000]), [1e-5, 5e-4, 1e-3, 1e-3, 9e-4, 8e-4, 5e-4, 1e-5, 1e-5, 1e-5], rtol=1e-12
    )
    assert parse_schedule(s.spec()) == s and s.spec() == "free:100=0.001|500=0.0008|900=0.0002|999=1e-05"
    with pytest.raises(ScaletuneError, match="'500' is not STEP=RATE"):
        parse_schedule("free:100=0.001|500")
    with pytest.raises(ScaletuneError, match="knot steps must be >= 0 and increase"):
        parse_schedule("free:100=0.001|50=0.0008")
    with pytest.raises(ScaletuneError, match=r"steps=2000 disagrees with its knots \(steps = 1000\)"):
        replace(s, steps=2000)  # a free schedule cannot be stretched by changing steps (hparams.recommend relies on it)


def test_a_table_round_trips_in_memory_and_as_a_file(tmp_path):
    s = TableSchedule((0, 10, 50, 99), (1e-4, 1e-3, 5e-4, 1e-5))
    assert (s.steps, s.lr, s.warmup) == (100, 1e-3, 11)
    assert s.spec() == "table:0=0.0001|10=0.001|50=0.0005|99=1e-05" and parse_schedule(s.spec()) == s
    np.testing.assert_array_equal(s([0, 9, 10, 49, 50, 99]), [1e-4, 1e-4, 1e-3, 1e-3, 5e-4, 1e-5])  # no warm-up ramp on top
    path = tmp_path / "sched.csv"
    pd.DataFrame({"step": s.table_steps, "lr": s.table_lrs}).to_csv(path, index=False)
    from_file = parse_schedule(str(path))
    assert from_file.spec() == str(path) and parse_schedule(from_file.spec()) == from_file
    np.testing.assert_array_equal(from_file.lrs(), s.lrs())
    with pytest.raises(ScaletuneError, match="no such schedule table"):
        parse_schedule(str(tmp_path / "missing.csv"))


def test_schedule_with_a_kind_builds_that_kinds_class():
    s = Schedule(kind="wsd", steps=1000, lr=1e-3, cooldown=0.1, shape="1-sqrt")
    assert isinstance(s, WSDSchedule) and s == WSDSchedule(steps=1000, lr=1e-3, cooldown=0.1, shape="1-sqrt")
    assert Schedule.parse("wsd:steps=1000,lr=0.001,cooldown=0.1,shape=1-sqrt") == s
    with pytest.raises(ScaletuneError, match=r"cannot use milestones"):
        Schedule(kind="wsd", steps=1000, lr=1e-3, milestones=(5,))


# --- a schedule registered outside the package ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class InverseSqrt(Schedule):
    """lr / sqrt(1 + (s - warmup) / shift) after warm-up."""

    shift: float = 100.0

    def rate(self, s):
        return self.lr / np.sqrt(1.0 + np.maximum(s - self.warmup, 0.0) / self.shift)


@pytest.fixture
def invsqrt():
    register_schedule("invsqrt-test", InverseSqrt)
    yield InverseSqrt
    unregister = scaletune.schedules._REGISTRY.pop("invsqrt-test")  # keep the registry as the other tests expect it
    assert unregister is InverseSqrt


def test_a_registered_schedule_round_trips_and_warms_up_like_the_built_ins(invsqrt):
    s = parse_schedule("invsqrt-test:steps=2000,lr=2e-3,warmup=100,shift=400")
    assert isinstance(s, InverseSqrt) and s.kind == "invsqrt-test" and parse_schedule(s.spec()) == s
    assert s.spec() == "invsqrt-test:steps=2000,lr=0.002,warmup=100,shift=400.0"
    np.testing.assert_allclose(s([0, 99, 100, 500, 1700]), [2e-5, 2e-3, 2e-3, 2e-3 / math.sqrt(2), 2e-3 / math.sqrt(5)], rtol=1e-12)
    with pytest.raises(ScaletuneError, match="registered already"):
        register_schedule("invsqrt-test", ConstantSchedule)
    with pytest.raises(ScaletuneError, match="cannot use 'final=0.1'"):
        parse_schedule("invsqrt-test:steps=2000,lr=2e-3,final=0.1")


def test_a_registered_schedule_drives_a_curve_fit_and_its_prediction(invsqrt):
    """Curves drawn from the annealing law under two invsqrt schedules (given by spec, as a user would), fitted;
    the fit predicts a third invsqrt schedule by its spec exactly as from the same rates given step by step."""
    law = get_curve_law("annealing")
    truth, options = np.array([3.0, 0.6, 0.45, 0.9]), {"lam": 0.999}
    curves = []
    for i, shift in enumerate((50.0, 2000.0)):
        spec = f"invsqrt-test:steps=3000,lr=1e-3,warmup=100,shift={shift}"
        steps = np.arange(100, 3001, 50)
        loss, _ = law.evaluate(truth, prepare(parse_schedule(spec).lrs(), 100, steps), options)
        curves.append(curve_from_arrays(f"c{i}", steps, loss, None, spec))
    assert [c.schedule for c in curves] == [
        "invsqrt-test:steps=3000,lr=0.001,warmup=100,shift=50.0",
        "invsqrt-test:steps=3000,lr=0.001,warmup=100,shift=2000.0",
    ]
    fit = fit_curves(curves, law="annealing", bootstrap=0, cv=False)
    target = "invsqrt-test:steps=6000,lr=1e-3,warmup=100,shift=400"
    by_spec = fit.predict(target, [1000, 6000])
    np.testing.assert_array_equal(by_spec, fit.predict(parse_schedule(target).lrs(), [1000, 6000]))
    assert fit.predict_interval(target, [6000]).schedule == "invsqrt-test:steps=6000,lr=0.001,warmup=100,shift=400.0"
    expected, _ = law.evaluate(truth, prepare(parse_schedule(target).lrs(), 100, np.array([1000, 6000])), options)
    np.testing.assert_allclose(by_spec, expected, rtol=1e-3)


def test_a_bad_registration_fails_when_registered():
    with pytest.raises(ScaletuneError, match="use lowercase letters"):
        register_schedule("Inverse Sqrt", InverseSqrt)

    @dataclass(frozen=True, kw_only=True)
    class NoRate(Schedule):
        pass

    with pytest.raises(TypeError, match="must implement rate"):
        register_schedule("norate-test", NoRate)

    @dataclass(frozen=True, kw_only=True)
    class DictField(Schedule):
        table: dict = None

        def rate(self, s):
            return s

    with pytest.raises(TypeError, match="cannot be written in a spec"):
        register_schedule("dictfield-test", DictField)
    assert not {"norate-test", "dictfield-test"} & set(schedule_kinds())
