"""`scaletune predict LOSSFIT.json --then ERRORFIT.json --at N=...,M=...`: loss, then task error, jointly."""

from __future__ import annotations

import click

from scaletune.runtable import parse_point


def predict_chain(loss_fit, source: str, then: str, points, level: float, as_json: bool) -> None:
    """Chain ``loss_fit`` (already loaded from ``source``) into the downstream-error fit ``then`` at each point."""
    from scaletune.cli.laws_cmds import _echo_json, _table
    from scaletune.laws import load_fit
    from scaletune.laws.downstream import chain_predict

    error_fit = load_fit(then)
    preds = [chain_predict(loss_fit, error_fit, parse_point(text), level=level, seed=i) for i, text in enumerate(points)]
    if as_json:
        _echo_json({"loss_fit": source, "error_fit": then, "level": level, "predictions": [p.to_dict() for p in preds]})
        return
    click.echo(f"{source}: {loss_fit.law}, then {then}: {error_fit.law} (error = {error_fit.y})")
    pct = f"{int(round(level * 100))}%"
    rows = [
        [
            ", ".join(f"{k}={v:.4g}" for k, v in p.point.items() if k in ("N", "D", "M")),
            p.loss.value,
            f"[{p.loss.interval[0]:.4g}, {p.loss.interval[1]:.4g}]",
            p.error.value,
            f"[{p.error.interval[0]:.4g}, {p.error.interval[1]:.4g}]",
            f"x{p.loss.extrapolation:.3g} / x{p.error.extrapolation:.3g}",
        ]
        for p in preds
    ]
    _table(
        f"chained predictions ({pct} joint intervals of a new model's measurement; extrapolation: loss law in "
        "its variables / error law in loss)",
        ["point", "loss", f"loss {pct}", "error", f"error {pct}", "extrapolation"],
        rows,
    )
    for p in preds:
        for note in p.notes:
            click.echo(f"note: {note}")
