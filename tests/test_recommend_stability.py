"""recommend checks its rate against the stability edge predicted at the target (issue 13, A5)."""

from __future__ import annotations

import pytest

from scaletune.hparams import recommend
from scaletune.hparams.synthetic import Landscape
from scaletune.stability import stability_edge


@pytest.mark.parametrize("asym, within", [(1.0, False), (16.0, True)])
def test_recommend_carries_the_margin_to_the_predicted_stability_edge(asym, within):
    """Curvature 0.02 nats per (ln lr)^2 on a ~2.3-nat loss leaves the 1% band ~2.8x above the optimum: no
    warning; sixteen times steeper above the optimum, ~1.3x: the recommended rate is within 2x of the edge."""
    runs = Landscape(noise=0.001, asym=asym).sweep([(n, 20 * n) for n in (1e7, 2e7, 4e7, 8e7)], seed=6)
    target = {"N": 3.2e8, "D": 6.4e9}
    rec = recommend(runs, target, bootstrap=60, loss_bootstrap=0, select=False)
    edge = stability_edge(runs, target, bootstrap=200, seed=0)
    assert edge is not None and rec.stability is not None
    assert rec.stability["edge"]["value"] == pytest.approx(edge.value)
    assert rec.stability["ratio"] == pytest.approx(edge.value / rec.lr.value)
    assert rec.stability["within"] == (rec.stability["ratio"] < 2) == within
    assert rec.to_dict()["stability"]["ratio"] == pytest.approx(rec.stability["ratio"])
