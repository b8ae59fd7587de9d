"""`scaletune` commands of the train area: train, param-table, coord-check, schedule-plot.

torch and matplotlib are imported inside the commands, so the rest of the CLI works without them.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import click

from scaletune._json import dumps
from scaletune.cli._tables import WIDE_OPTION, choice_option
from scaletune.errors import ScaletuneError
from scaletune.runtable import parse_assignments


def _print_table(rows: list[dict[str, Any]], title: str, formats: dict[str, str] | None = None) -> None:
    from rich.console import Console

    from scaletune.cli._tables import Col, FitTable, show

    if not rows:
        return
    # At the terminal's width: the first four columns stay, the others move below the table when it is too wide.
    cols = [Col(key, "left" if isinstance(rows[0][key], str) else "right", priority=max(0, i - 3)) for i, key in enumerate(rows[0])]
    show(
        Console(),
        FitTable(
            title,
            cols,
            [[format(v, (formats or {}).get(k, "")) if isinstance(v, float) else str(v) for k, v in row.items()] for row in rows],
        ),
    )


def _load_model(spec: str):
    """A preset name of the built-in LM, or ``module:factory`` / ``path/file.py:factory`` (called with no args)."""
    from scaletune.train import PRESETS

    if spec in PRESETS:
        return None
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ScaletuneError(f"--model {spec!r}: expected a preset ({', '.join(PRESETS)}) or MODULE:FACTORY")
    try:
        if target.endswith(".py"):
            if not Path(target).exists():
                raise ScaletuneError(f"--model {target}: no such file")
            module_spec = importlib.util.spec_from_file_location("scaletune_user_model", target)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
        factory = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ScaletuneError(f"--model {spec!r}: cannot load ({exc})") from None
    return factory()


@click.command("train")
@click.option("--width", type=int, required=True, help="Model width (d_model).")
@click.option("--depth", type=int, required=True, help="Number of transformer blocks.")
@click.option("--tokens", type=float, required=True, help="Training tokens D (bytes).")
@click.option("--lr", type=float, required=True, help="Peak (base) learning rate.")
@click.option("--param", type=click.Choice(["sp", "mup", "completep"]), default="mup", show_default=True)
@click.option(
    "--schedule",
    default="cosine:final=0.1",
    show_default=True,
    help="Schedule kind or spec without steps/lr, e.g. 'wsd:cooldown=0.2,shape=1-sqrt'.",
)
@click.option("--set", "extra", default="", help="Other run config keys, e.g. 'batch_size=4096,seed=1,tied=true'.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the run-table row (JSON, with its curve) here.")
@WIDE_OPTION
def train_cmd(width: int, depth: int, tokens: float, lr: float, param: str, schedule: str, extra: str, out: str | None) -> None:
    """Train the built-in LM on the bundled Shakespeare text and print its run-table row."""
    from scaletune.train import run_lm

    config: dict[str, Any] = {"width": width, "depth": depth, "tokens": int(tokens), "lr": lr, "param": param, "schedule": schedule}
    if extra:
        config.update(parse_assignments(extra, "run config"))

    def progress(p: dict[str, Any]) -> None:
        click.echo(
            f"step {p['step']}/{p['steps']}  tokens {p['tokens']:,}  train {p['train_loss']:.4f}  "
            f"val {p['val_loss']:.4f}  {p['tokens_per_s']:,.0f} tok/s",
            err=True,
        )

    row = run_lm(config, progress=progress)
    curve = row.pop("curve")
    formats = {"loss": ".4f", "bits_per_byte": ".4f", "C": ".4g", "C_exact": ".4g", "seconds": ".1f", "tokens_per_s": ",.0f", "lr": "g"}
    _print_table(
        [{"column": k, "value": format(v, formats.get(k, "")) if isinstance(v, float) else str(v)} for k, v in row.items()],
        "run-table row (loss: validation nats/byte; C = 6*N*D FLOPs)",
    )
    if out:
        Path(out).write_text(dumps({**row, "curve": curve}))
        click.echo(f"wrote {out}")


@click.command("param-table")
@click.option(
    "--model",
    "model_spec",
    default="tiny",
    show_default=True,
    help="Built-in preset, or MODULE:FACTORY / FILE.py:FACTORY returning any nn.Module.",
)
@click.option("--param", type=click.Choice(["sp", "mup", "completep"]), default="mup", show_default=True)
@click.option("--width", type=float, help="Width of the model (default: the preset's).")
@click.option("--base-width", type=float, help="Width where hyperparameters were tuned (default: width).")
@click.option("--depth", type=float, help="Depth of the model (default: the preset's, else 1).")
@click.option("--base-depth", type=float, help="Depth where hyperparameters were tuned (default: depth).")
@click.option("--alpha", type=float, default=1.0, show_default=True, help="CompleteP depth exponent in [0.5, 1].")
@click.option("--lr", type=float, default=1e-2, show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--eps", type=float, default=1e-8, show_default=True)
@choice_option("--optimizer", ["adamw", "sgd"])
@click.option("--tied/--untied", default=False, help="Built-in LM: tie embedding and readout.")
@click.option("--role", "role_specs", multiple=True, help="REGEX=ROLE override (roles: input, hidden, readout, vector).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON lines instead of a table.")
@WIDE_OPTION
def param_table_cmd(
    model_spec: str,
    param: str,
    width: float | None,
    base_width: float | None,
    depth: float | None,
    base_depth: float | None,
    alpha: float,
    lr: float,
    weight_decay: float,
    eps: float,
    optimizer: str,
    tied: bool,
    role_specs: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show, for every parameter, its role, init std, effective LR, weight decay, Adam eps and multiplier."""
    from scaletune.train import PRESETS, LMConfig, TransformerLM, make_plan

    model = _load_model(model_spec)
    if model is None:
        w, d, h = PRESETS[model_spec]
        w, d = int(width or w), int(depth or d)
        model = TransformerLM(LMConfig(width=w, depth=d, heads=h if w % h == 0 else None, tied=tied))
        width, depth = w, d
    elif width is None:
        raise ScaletuneError("--width is required for a user model (the number the base width is compared to)")
    roles = {}
    for spec in role_specs:
        pattern, sep, role = spec.rpartition("=")
        if not sep or not pattern:
            raise ScaletuneError(f"--role {spec!r}: expected REGEX=ROLE")
        roles[pattern] = role
    plan = make_plan(
        model,
        param,
        width=width,
        base_width=base_width,
        depth=depth or 1,
        base_depth=base_depth,
        alpha=alpha,
        optimizer=optimizer,
        roles=roles or None,
    )
    rows = plan.table(lr, weight_decay, eps)
    if as_json:
        for row in rows:
            click.echo(dumps(row, indent=None))
        return
    title = (
        f"{param} ({optimizer}): width {plan.width:g} / base {plan.base_width:g} (m={plan.width_mult:g}), "
        f"depth {plan.depth:g} / base {plan.base_depth:g} (l={plan.depth_mult:g}), base lr {lr:g}"
    )
    _print_table(rows, title, {"init_std": ".4g", "lr": ".4g", "weight_decay": ".4g", "eps": ".3g", "out_mult": ".4g"})


@click.command("coord-check")
@click.option("--param", "params", multiple=True, type=click.Choice(["sp", "mup", "completep"]), default=("sp", "mup"), show_default=True)
@choice_option("--axis", ["width", "depth"], help="Sweep width (muP check) or depth (CompleteP check).")
@click.option("--widths", default="32,64,128,256", show_default=True, help="Comma-separated widths (axis width).")
@click.option("--depths", default="2,4,8,16", show_default=True, help="Comma-separated depths (axis depth).")
@click.option("--steps", type=int, default=5, show_default=True, help="Adam steps after initialisation.")
@click.option("--seeds", type=int, default=1, show_default=True)
@click.option("--set", "extra", default="", help="Run config keys, e.g. 'lr=0.003,depth=4,mlp=swiglu'.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="coord_check",
    show_default=True,
    help="Folder for coord_check.csv and coord_check.png.",
)
@WIDE_OPTION
def coord_check_cmd(params: tuple[str, ...], axis: str, widths: str, depths: str, steps: int, seeds: int, extra: str, out: str) -> None:
    """Record every layer's activation RMS per step at several widths (or depths); print the log-log slopes
    of RMS vs width (depth), write coord_check.csv and coord_check.png."""
    import pandas as pd

    from scaletune.report.train_plots import plot_coord_check
    from scaletune.train.coordcheck import coord_check

    text = widths if axis == "width" else depths
    try:
        ws = sorted({int(w) for w in text.split(",") if w.strip()})
    except ValueError:
        raise ScaletuneError(f"--{axis}s {text!r}: expected comma-separated integers") from None
    if len(ws) < 2 or min(ws) <= 0:
        raise ScaletuneError(f"--{axis}s {text!r}: need at least two positive {axis}s")
    if steps < 1 or seeds < 1:
        raise ScaletuneError("--steps and --seeds must be at least 1")
    config = parse_assignments(extra, "run config") if extra else {}
    results = {p: coord_check(ws, p, steps=steps, seeds=range(seeds), config=config, axis=axis) for p in params}
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    pd.concat([r.table_.assign(param=p) for p, r in results.items()]).to_csv(folder / "coord_check.csv", index=False)
    plot_coord_check({p: r.table_ for p, r in results.items()}, folder / "coord_check.png", axis=axis)
    rows = []
    for p, r in results.items():
        row = {"param": p, **{f"slope_{k}": v for k, v in r.kind_slopes().items()}}
        if axis == "depth":
            row["slope_last_block"] = float(r.slopes().set_index("layer").loc["blocks.-1", "slope"])
        rows.append(row)
    _print_table(
        rows, f"log-log slope of activation RMS vs {axis} at step {steps} (flat = 0)", {k: "+.3f" for k in rows[0] if k.startswith("slope")}
    )
    click.echo(f"wrote {folder / 'coord_check.csv'} and {folder / 'coord_check.png'}")


@click.command("schedule-plot")
@click.argument("specs", nargs=-1, required=True)
@click.option("--steps", type=int, help="Steps for specs that do not give steps=.")
@click.option("--lr", type=float, help="Peak LR for specs that do not give lr=.")
@click.option("--out", type=click.Path(dir_okay=False), default="schedules.png", show_default=True)
@WIDE_OPTION
def schedule_plot_cmd(specs: tuple[str, ...], steps: int | None, lr: float | None, out: str) -> None:
    """Plot learning-rate schedules given as spec strings, e.g. 'wsd:steps=1000,lr=1e-3,warmup=50,cooldown=0.2'."""
    from scaletune.report.train_plots import plot_schedules
    from scaletune.schedules import Schedule

    overrides = {k: v for k, v in (("steps", steps), ("lr", lr)) if v is not None}
    schedules = [Schedule.parse(s, **overrides) for s in specs]
    rows = []
    for s in schedules:
        lrs = s.lrs()
        rows.append(
            {
                "schedule": s.spec(),
                "lr_first": float(lrs[0]),
                "lr_mid": float(lrs[s.steps // 2]),
                "lr_last": float(lrs[-1]),
                "lr_mean": float(lrs.mean()),
            }
        )
    _print_table(rows, "learning rate at steps 0, steps//2, steps-1", {k: ".4g" for k in rows[0] if k != "schedule"})
    plot_schedules(schedules, out)
    click.echo(f"wrote {out}")


COMMANDS: list = [train_cmd, param_table_cmd, coord_check_cmd, schedule_plot_cmd]
