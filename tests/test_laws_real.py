"""Real published data: Porian et al. 2024 isoFLOP exponents, Muennighoff et al. 2023 data-constrained law."""

import numpy as np
import pandas as pd
import pytest

from laws_helpers import DATABLATIONS, PORIAN, load_porian_config
from scaletune.laws import fit, get_law, isoflop, published
from scaletune.laws.fitting import _Problem
from scaletune.laws.objectives import get_objective

POINTS = pd.read_csv(PORIAN / "DERIVED_isoflop_points.csv")
REFERENCE = pd.read_csv(PORIAN / "DERIVED_reference_fits_from_repo.csv")


@pytest.mark.parametrize(
    "row",
    [r for _, r in REFERENCE.iterrows()],
    ids=[f"{r.dataset}-{r.hparams}-{r.warmup}-{r.decay}-{r.param_count}-{r.val}" for _, r in REFERENCE.iterrows()],
)
def test_isoflop_reproduces_porian_exponent_inside_published_interval(row):
    sub = load_porian_config(POINTS, row)
    res = isoflop(sub, C="flops", N="n", D="t_tokens", bootstrap=50, seed=0)
    assert row.a_CI95_low <= res.a <= row.a_CI95_high, (res.a, row.a_CI95_low, row.a_CI95_high)
    lo, hi = res.n_fit.intervals["c_C"]
    assert lo < res.a < hi
    # N* and D* come from the same curves, so under C = 6ND their exponents sum to ~1
    if row.param_count != "attention":
        assert res.a + res.b == pytest.approx(1.0, abs=0.02)


def test_isoflop_optima_match_the_authors_per_budget_optima():
    row = REFERENCE.iloc[4]  # RefinedWeb, tuned, no decay: the configuration that agrees with Chinchilla
    ours = isoflop(load_porian_config(POINTS, row), C="flops", N="n", D="t_tokens", bootstrap=20).optima
    theirs = load_porian_config(pd.read_csv(PORIAN / "DERIVED_optimal_pairs_from_repo.csv"), row)
    merged = ours.merge(theirs, left_on="C", right_on="flops")
    assert len(merged) >= 10
    np.testing.assert_allclose(merged.N_star, merged.n_star, rtol=0.05)
    np.testing.assert_allclose(merged.loss_star_x, merged.loss_star_y, rtol=2e-3)


def _datablations():
    df = pd.read_csv(DATABLATIONS / "DERIVED_parametric_fit_182_samples.csv")
    return pd.DataFrame(
        {"N": df.N_params_billion * 1e9, "D": df.D_tokens_billion * 1e9, "U": df.U_unique_tokens_billion * 1e9, "loss": df.val_loss}
    )


def test_datablations_published_law_reproduces_readme_values_and_objective():
    law = published("muennighoff")
    pred = law.predict({"N": [6.34e9, 8.67e9], "D": [242e9, 178e9], "U": [25e9, 25e9]})
    assert abs(pred[0] - 2.2256440889984477) < 1e-9
    assert abs(pred[1] - 2.2269634075087867) < 1e-9
    df = _datablations()
    dc = get_law("data_constrained")
    prob = _Problem(dc, {k: df[k].to_numpy() for k in ("N", "D", "U")}, df.loss.to_numpy(), get_objective("huber"), {})
    value = prob.value(np.array([law.params_[p] for p in dc.params]))
    assert value == pytest.approx(0.015825936, abs=1e-9)


def test_datablations_refit_of_repetition_constants_reaches_published_objective():
    pub = published("muennighoff").params_
    frozen = {k: pub[k] for k in ("a", "b", "e", "alpha", "beta")}
    r = fit("data_constrained", _datablations(), fixed=frozen, bootstrap=0)
    assert r.diagnostics["objective_value"] <= 0.015825936
    # the objective is flat in (R_D*, R_N*) (and the frozen part fits these runs only to ~9% mean log error),
    # so the constants themselves are not compared; the fit must converge inside the bounds
    assert r.diagnostics["converged"] and not r.diagnostics["at_bound"]
    assert r.diagnostics["objective_value"] > 0.9 * 0.015825936
