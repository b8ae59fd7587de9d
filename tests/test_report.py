"""The HTML report: every section's figures carry the numbers of the fits, missing data is said in place, and
the page renders in a real headless Chromium (Debian's `chromium`, driven by Playwright)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaletune.cli import main
from scaletune.cli.report_cmds import analyse, curves_of_largest_scale
from scaletune.report.html import ReportData, build_sections, recommendation_rows, render_html, write_report
from scaletune.runtable import read_table

DATA = Path(__file__).parent / "data"
TARGET = {"N": 707360.0, "N_nonembed": 615200.0, "D": 524288.0, "width": 160.0, "depth": 2.0, "seq_len": 64.0}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def traces(fig, kind: str, **match) -> list:
    """The traces of ``fig`` tagged ``meta.kind == kind`` (and the other meta fields given)."""
    return [
        t for t in fig.data if isinstance(t.meta, dict) and t.meta.get("kind") == kind and all(t.meta.get(k) == v for k, v in match.items())
    ]


def demo_runs() -> pd.DataFrame:
    """The bundled demo sweep, with the largest rate of the smallest scale marked diverged (as a run that blew up)."""
    runs = read_table(DATA / "hparams-demo" / "runs.csv")
    blown = (runs["N"] == runs["N"].min()) & (runs["D"] == runs["D"].min()) & (runs["lr"] == runs["lr"].max())
    runs.loc[blown, ["status", "loss"]] = ["diverged", np.nan]
    return runs


@pytest.fixture(scope="module")
def analysed():
    data = analyse(demo_runs(), TARGET, source="demo runs", bootstrap=40, seed=0, command="pytest")
    return data, {s.key: s for s in build_sections(data)}


def test_sweeps_panels_carry_each_optimum_its_interval_band_and_the_diverged_runs(analysed):
    data, sections = analysed
    fig = sections["sweeps"].figures[0]
    assert len([k for k in fig.layout.to_plotly_json() if k.startswith("xaxis")]) == data.runs["D"].nunique()  # one panel per D
    bracketed = [o for o in data.optima if o.lr_bracketed]
    assert len(bracketed) == len(traces(fig, "optimum")) > 0
    for o in bracketed:
        (t,) = traces(fig, "optimum", scale=o.scale)
        assert t.x[0] == o.lr_ and t.y[0] == o.loss_
        assert t.error_x.array[0] == pytest.approx(o.lr_interval[1] - o.lr_)
        assert t.error_x.arrayminus[0] == pytest.approx(o.lr_ - o.lr_interval[0])
        (band,) = traces(fig, "band", scale=o.scale)
        assert tuple(band.x) == tuple(o.band_lr) and band.y[0] == pytest.approx(o.loss_ * (1 + o.band))
    (bad,) = traces(fig, "diverged")
    diverged = data.runs[data.runs["status"] == "diverged"]
    assert list(bad.x) == list(diverged["lr"]) and len(bad.x) == 1
    runs_traces = traces(fig, "runs")
    assert sum(len(t.x) for t in runs_traces) == data.runs[data.runs["status"] == "ok"].groupby(["N", "D", "lr"]).ngroups


def test_laws_figures_draw_the_fitted_laws_the_target_and_the_published_laws(analysed):
    data, sections = analysed
    rec, laws = data.recommendation, data.laws
    lr_fig, batch_fig, loss_fig = sections["laws"].figures
    law = laws.laws["lr_ND"]
    lines = traces(lr_fig, "law", law="lr_ND")
    assert len(lines) == data.runs["D"].nunique()
    for t in lines:
        D = t.meta["at"]["D"]
        expected = law.fit_.predict({v: {"N": np.asarray(t.x), "D": np.full(len(t.x), D)}[v] for v in law.variables})
        assert np.allclose(t.y, expected, rtol=1e-12)
    band = traces(lr_fig, "band", law="lr_ND")
    lo, hi = law.fit_.predict_interval({"N": np.asarray(band[0].x), "D": np.full(len(band[0].x), data.runs["D"].min())}).interval
    assert np.allclose(band[0].y, hi) and np.allclose(band[1].y, lo)
    (target,) = traces(lr_fig, "target")
    assert target.x[0] == TARGET["N"] and target.y[0] == rec.lr.value
    assert target.error_y.array[0] == pytest.approx(rec.lr.interval[1] - rec.lr.value)
    published = {t.meta["law"]: t.y[0] for t in traces(lr_fig, "published-target")}
    assert published == {name: p["lr"] for name, p in rec.published.items()}
    (b_target,) = traces(batch_fig, "target")
    assert b_target.x[0] == TARGET["D"] and b_target.y[0] == rec.batch_size.value
    (l_target,) = traces(loss_fig, "target")
    assert l_target.x[0] == pytest.approx(6 * TARGET["N"] * TARGET["D"]) and l_target.y[0] == rec.loss.value
    for t in traces(loss_fig, "law"):  # chinchilla L(N, D): a line per D, drawn against C = 6ND
        D = t.meta["at"]["D"]
        N = np.asarray(t.x) / (6 * D)
        assert np.allclose(t.y, laws.loss.predict({"N": N, "D": np.full(len(N), D)}), rtol=1e-9)
    points = traces(loss_fig, "optimum")
    assert sorted(y for t in points for y in t.y) == sorted(o.loss_ for o in data.optima if o.lr_bracketed)


def test_recommendation_rows_carry_values_intervals_extrapolation_and_the_page_shows_them(analysed):
    data, sections = analysed
    rec = data.recommendation
    rows = {r["quantity"].split(" (")[0]: r for r in recommendation_rows(rec)[::-1]}  # "batch size": the tokens row
    assert (rows["learning rate"]["value"], rows["learning rate"]["lo"], rows["learning rate"]["hi"]) == (rec.lr.value, *rec.lr.interval)
    assert rows["learning rate"]["extrapolation"] == rec.lr.extrapolation
    assert rows["final loss"]["value"] == rec.loss.value and rows["batch size"]["value"] == rec.batch_size.value
    assert rows["warm-up"]["value"] == rec.warmup["steps"]
    details = getattr(rec.lr, "details", None) or {}
    if "held_out_score_percent" in details:
        assert rows["learning rate"]["backtest_score_percent"] == details["held_out_score_percent"]
    html = "".join(sections["recommendation"].tables)
    for v in (rec.lr.value, *rec.lr.interval, rec.loss.value, rec.batch_size.value):
        assert f">{v:.4g}<" in html


def test_stability_section_draws_each_scales_sensitivity_edge_and_the_trends_at_the_target(analysed):
    data, sections = analysed
    fig = sections["stability"].figures[0]
    (arm,) = data.stability.arms
    (sens,) = traces(fig, "sensitivity-vs-N")
    assert list(sens.y) == [s.sensitivity for s in arm.scales if "N" in s.scale]
    edges = traces(fig, "edge")
    assert sorted(t.x[0] for t in edges) == sorted(s.edge for s in arm.scales)
    (edge_vs_n,) = traces(fig, "edge-vs-N")
    assert list(edge_vs_n.y) == [s.edge for s in arm.scales if s.edge_bracketed]
    (target,) = traces(fig, "sensitivity-target")
    p = arm.sensitivity_trend.prediction
    assert target.x[0] == TARGET["N"] and target.y[0] == p.value
    assert target.error_y.array[0] == pytest.approx(p.interval[1] - p.value)
    (trend,) = traces(fig, "sensitivity-trend")
    assert np.allclose(trend.y, arm.sensitivity_trend.intercept + arm.sensitivity_trend.slope * np.log(np.asarray(trend.x)))


def _multipower_curves():
    from scaletune.curves import read_curves

    mp = DATA / "multipowerlaw"
    specs = dict(pd.read_csv(mp / "schedules.csv").values)
    return [
        c for name in ("cosine_24000", "constant_24000") for c in read_curves(mp / "csv_25" / f"{name}.csv", specs[name], max_step=12000)
    ]  # half: a fast fit


def test_curves_figure_draws_observed_fitted_and_predicted_curves():
    from scaletune.curves import fit_curves

    curves = _multipower_curves()
    fit = fit_curves(curves, law="multipower", bootstrap=2, n_starts=1, seed=0, cv=False, method="lbfgs")  # a figure test
    pred = fit.predict_interval("wsd:steps=24000,lr=3e-4,warmup=2160,decay_start=20000,shape=exp,final=0.1")
    sections = {
        s.key: s for s in build_sections(ReportData("curves", curves=curves, curve_fit=fit, curve_prediction=pred, curve_scale="25M"))
    }
    fig = sections["curves"].figures[0]
    for c in curves:
        (obs,) = traces(fig, "observed", curve=c.name)
        assert np.array_equal(obs.y, c.loss)
        (law,) = traces(fig, "law", curve=c.name)
        assert np.allclose(law.y, fit.predict(c.lrs, np.asarray(law.x)))
    (p,) = traces(fig, "prediction")
    assert np.array_equal(p.y, pred.value) and np.array_equal(p.x, pred.steps)
    hi, lo = traces(fig, "prediction-band")
    assert np.array_equal(lo.y, pred.lo) and np.array_equal(hi.y, pred.hi)


def test_curves_come_from_the_largest_scale_ok_runs_at_its_common_batch_size():
    rows, points = [], []
    for i, (N, batch, lr, status) in enumerate(
        [
            (1e4, 64, 1e-3, "ok"),
            (4e4, 64, 1e-3, "ok"),
            (4e4, 64, 2e-3, "ok"),
            (4e4, 64, 4e-3, "diverged"),
            (4e4, 128, 1e-3, "ok"),
            (4e4, 64, 8e-3, "ok"),
        ]
    ):
        rows.append(
            {"run_id": f"r{i}", "N": N, "D": 1e6, "lr": lr, "batch_size": batch, "status": status, "schedule": f"constant:steps=40,lr={lr}"}
        )
        points += [{"run_id": f"r{i}", "step": s, "lr": lr, "loss": 3 + 5 / math.sqrt(s)} for s in range(1, 41)]
    runs, table = pd.DataFrame(rows), pd.DataFrame(points)
    table.loc[(table["run_id"] == "r5") & (table["step"] == 20), "lr"] = 1.0  # disagrees with its schedule: left out
    curves, label, problems = curves_of_largest_scale(runs, table)
    assert [c.name for c in curves] == ["lr=0.001", "lr=0.002"] and len(problems) == 1
    assert label == "N=4e+04, D=1e+06, batch 64"
    assert np.array_equal(curves[0].steps, np.arange(1, 41)) and np.allclose(curves[1].lrs, 2e-3)


@pytest.mark.slow  # a real (synthetic-workload) study on SQLite, then the analyses: ~15-45 s
def test_a_study_and_its_output_folder_give_sweeps_and_the_loss_curves_of_the_largest_scale(tmp_path, capsys):
    from scaletune.study import export_runs, load_study_config, run_study

    study = tmp_path / "bowl.toml"
    study.write_text(f"""
name = "bowl"
workload = "study_workloads:bowl"
seeds = [0]
storage = "sqlite:///{tmp_path / "bowl.db"}"
[fixed]
steps = 12
[ladder]
width = [8, 16, 32]
depth = [2]
tokens = [1e5]
params = "12 * depth * width**2"
[space]
lr = {{ log = ["0.02 / width", "12.5 / width"], points = 6 }}
[strategy]
name = "grid"
""")
    config = load_study_config(study)
    run_study(config, workers=1, progress=False)
    runs = export_runs(config)
    runs.to_csv(tmp_path / "runs.csv", index=False)
    out = tmp_path / "report.html"
    assert main(["report", str(study), "--bootstrap", "20", "--out", str(out)]) == 0, capsys.readouterr().err
    assert 'data-missing="sweeps"' not in out.read_text() and 'data-missing="curves"' not in out.read_text()
    from scaletune.cli.report_cmds import load_source

    runs, curve_table, target, _ = load_source(str(tmp_path))  # the folder: runs.csv and the study file beside it
    data = analyse(runs, None, curve_table=curve_table, bootstrap=20)
    largest = runs[runs["N"] == runs["N"].max()]
    assert len(data.optima) == 3 and len(data.curves) == len(largest) == 6 and target is None
    fig = {s.key: s for s in build_sections(data)}["curves"].figures[0]
    for c in data.curves:
        run = largest[largest["lr"].map(lambda v: f"lr={v:.3g}") == c.name].iloc[0]
        stored = curve_table[curve_table["run_id"] == run["run_id"]]
        (obs,) = traces(fig, "observed", curve=c.name)
        assert np.allclose(obs.y, stored["loss"]) and c.steps[-1] == 12


def _porian(tmp_path) -> Path:
    df = pd.read_csv(DATA / "porian-isoflop" / "DERIVED_isoflop_points.csv")
    keep = (df["dataset"] == "rw") & (df["hparams"] == "tuned") & (df["warmup"] == "short") & (df["val"] == "val")
    path = tmp_path / "porian.csv"
    df[keep & (df["param_count"] == "standard")].to_csv(path, index=False)
    return path


def test_a_table_without_learning_rates_still_gets_its_isoflop_section_and_says_what_is_missing(tmp_path, capsys):
    out = tmp_path / "r" / "report.html"
    assert main(["report", str(_porian(tmp_path)), "--map", "C=flops,N=n,D=t_tokens", "--bootstrap", "20", "--out", str(out)]) == 0
    runs = read_table(_porian(tmp_path), "C=flops,N=n,D=t_tokens")
    data = analyse(runs, None, source="porian", bootstrap=20)
    assert "'lr'" in data.missing["sweeps"] and len(data.optima) == 0 and data.recommendation is None
    sections = {s.key: s for s in build_sections(data)}
    fig = sections["isoflop"].figures[0]
    stars = traces(fig, "optimum")
    assert len(stars) == len(data.isoflop.optima) == 12
    assert sorted(t.x[0] for t in stars) == sorted(data.isoflop.optima["N_star"])
    (n_law,) = traces(fig, "law", quantity="N_star")
    assert np.allclose(n_law.y, data.isoflop.n_fit.predict({"C": np.asarray(n_law.x)}))
    page = out.read_text()
    for key in ("sweeps", "laws", "recommendation", "curves", "stability"):
        assert f'data-missing="{key}"' in page
    assert 'data-missing="isoflop"' not in page and page.count('class="plotly-graph-div"') == 1


def test_a_folder_without_runs_still_writes_every_section(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "empty"), "--out", str(out)]) == 0
    page = out.read_text()
    for key in ("sweeps", "laws", "recommendation", "curves", "isoflop", "stability"):
        assert f'data-missing="{key}"' in page
    assert 'id="provenance"' in page and "Plotly" in page and "<script src" not in page  # plotly.js inline


def test_unwritable_output_is_one_line_and_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker / "report.html", tmp_path):  # a parent that is a file; a folder
        assert main(["report", str(DATA / "hparams-demo" / "runs.csv"), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(out) in err[0]
    assert main(["report", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "r.html")]) == 2


def test_write_report_refuses_a_folder(tmp_path):
    from scaletune.errors import ScaletuneError

    with pytest.raises(ScaletuneError):
        write_report(ReportData("x"), tmp_path)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium browser installed (apt-get install chromium; .ci/chromium.sh does)")
def test_page_renders_in_headless_chromium(analysed, tmp_path):
    """No console error, every figure drawn with traces, a screenshot that is not blank."""
    from playwright.sync_api import sync_playwright

    data, sections = analysed
    path = tmp_path / "report.html"
    path.write_text(render_html(data, list(sections.values())), encoding="utf-8")
    n_figures = sum(len(s.figures) for s in sections.values())
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else route.continue_())
        page.goto(path.as_uri())
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n_figures}", timeout=60_000)
        drawn = page.eval_on_selector_all(".js-plotly-plot", "els => els.map(e => e.querySelectorAll('.scatterlayer .trace').length)")
        shot = page.locator("#fig-sweeps-0").screenshot()
        browser.close()
    assert errors == []
    assert len(drawn) == n_figures and min(drawn) > 0
    import io

    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), float)
    assert pixels.std() > 10  # lines, markers and axes; a blank or single-colour panel has ~0
