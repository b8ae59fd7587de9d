"""`scaletune fit | predict | allocate | isoflop | laws`: outputs, JSON documents, and every bad input."""

import numpy as np
import pandas as pd
import pytest

from laws_helpers import PORIAN, chinchilla_data, run_cli, run_json


@pytest.fixture
def runs_csv(tmp_path):
    path = tmp_path / "runs.csv"
    chinchilla_data(seed=0, noise=0.005).rename(columns={"loss": "val_loss"}).to_csv(path, index=False)
    return path


def test_fit_json_predict_allocate_round_trip(capsys, tmp_path, runs_csv):
    out = tmp_path / "fit.json"
    doc = run_json(capsys, "fit", runs_csv, "--law", "chinchilla", "--map", "loss=val_loss", "--bootstrap", "30", "--out", out)
    assert doc["law"] == "chinchilla" and doc["diagnostics"]["converged"]
    assert set(doc["intervals"]) >= {"a", "b", "e", "alpha", "beta", "E", "a_N"}
    assert abs(doc["params_"]["alpha"] - 0.3392) < 0.05
    pred = run_json(capsys, "predict", out, "--at", "N=7e10,D=1.4e12", "--at", "N=1e8,D=1e10")
    first, second = pred["predictions"]
    assert first["lo"] <= first["loss"] <= first["hi"]
    assert first["extrapolation"] == pytest.approx(7.0) and second["extrapolation"] == 1.0
    alloc = run_json(capsys, "allocate", out, "--compute", "5.76e23", "--loss", "2.0")
    a, inv = alloc["allocations"]
    assert a["N_star"] * a["D_star"] * 6 == pytest.approx(5.76e23, rel=1e-9)
    assert a["intervals"]["N_star"][0] <= a["N_star"] <= a["intervals"]["N_star"][1]
    assert inv["loss"] == 2.0 and inv["C"] == pytest.approx(6 * inv["N_star"] * inv["D_star"], rel=1e-9)


def test_allocation_inverse_matches_forward():
    from scaletune.laws import allocate, compute_for_loss, published

    hoffmann = published("hoffmann")
    fwd = allocate(hoffmann, 5.76e23)
    assert fwd.N_star == pytest.approx(4.03e10, rel=0.01)  # Hoffmann et al. Table 3 (Approach 3): 40B at Gopher's budget
    back = compute_for_loss(hoffmann, fwd.loss)
    assert back.C == pytest.approx(5.76e23, rel=1e-9) and back.N_star == pytest.approx(fwd.N_star, rel=1e-9)


def test_published_laws_in_predict_and_allocate(capsys):
    doc = run_json(capsys, "predict", "published:steplaw-lr", "--at", "N=1e9,D=1e11")
    assert doc["predictions"][0]["lr"] == pytest.approx(1.79 * 1e9**-0.713 * 1e11**0.307, rel=1e-12)
    doc = run_json(capsys, "predict", "published:muennighoff", "--at", "N=6.34e9,D=242e9,U=25e9")
    assert doc["predictions"][0]["loss"] == pytest.approx(2.2256440889984477, abs=1e-9)
    doc = run_json(capsys, "allocate", "published:deepseek", "--compute", "1e24")
    assert doc["allocations"][0]["D_star"] == pytest.approx(5.8316 * 1e24**0.4757, rel=1e-12)
    code, out, _ = run_cli(capsys, "allocate", "published:hoffmann", "--compute", "5.76e23")
    assert code == 0 and "N*" in out and "no intervals" in out


def test_fit_where_comparison_and_fixed_parameters(capsys):
    doc = run_json(capsys, "fit", "--example", "porian", "--where", "tokens_per_param>=5", "--bootstrap", "20", "--holdout", "C>=1e19")
    assert doc["diagnostics"]["n_points"] == 61 and doc["holdout"]["n"] == 12
    assert doc["holdout"]["mean_abs_relative_error"] < 0.03
    doc = run_json(
        capsys,
        "fit",
        "--example",
        "datablations",
        "--bootstrap",
        "10",
        "--fix",
        "a=6.255414,b=7.3049974,e=0.6254804,alpha=0.3526596,beta=0.3526596",
    )
    assert doc["diagnostics"]["objective_value"] <= 0.015825936
    assert set(doc["intervals"]) == {"R_D", "R_N"}  # quantities of fixed parameters only carry no interval


def test_fit_example_and_human_output(capsys, tmp_path):
    code, out, err = run_cli(
        capsys, "fit", "--example", "porian", "--bootstrap", "10", "--holdout", "C>=1e19", "--plot", tmp_path / "fit.png"
    )
    assert code == 0, err
    assert "alpha" in out and "held out (C>=1e19)" in out and (tmp_path / "fit.png").stat().st_size > 10_000


def test_isoflop_command_on_porian(capsys, tmp_path):
    doc = run_json(
        capsys,
        "isoflop",
        PORIAN / "DERIVED_isoflop_points.csv",
        "--map",
        "C=flops,N=n,D=t_tokens",
        "--where",
        "dataset=rw,hparams=tuned,warmup=short,decay=const,param_count=standard,val=val",
        "--bootstrap",
        "40",
        "--plot",
        tmp_path / "iso.png",
        "--out",
        tmp_path / "nstar.json",
    )
    assert 0.491 <= doc["a_N_exponent"] <= 0.505  # Porian et al. Table 1: 0.497 (0.491-0.505)
    assert len(doc["optima"]) == 12 and doc["a_interval"][0] < doc["a_N_exponent"] < doc["a_interval"][1]
    assert (tmp_path / "iso.png").exists()
    pred = run_json(capsys, "predict", tmp_path / "nstar.json", "--at", "C=1e21")
    p = pred["predictions"][0]
    assert p["lo"] < p["N_star"] < p["hi"] and p["extrapolation"] == pytest.approx(1e21 / 2.56e19)


def test_laws_listing(capsys):
    code, out, _ = run_cli(capsys, "laws")
    assert code == 0
    for name in (
        "chinchilla",
        "compute",
        "powerlaw:VARS",
        "data_constrained",
        "overtrained",
        "critical_batch",
        "published:hoffmann",
        "published:deepseek",
    ):
        assert name in out


def _bad(capsys, *args):
    code, out, err = run_cli(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


def test_bad_inputs_give_one_line_and_exit_code_2(capsys, tmp_path, runs_csv):
    df = chinchilla_data(seed=0)

    def write(name, frame):
        path = tmp_path / name
        frame.to_csv(path, index=False)
        return path

    assert "missing column 'loss'" in _bad(capsys, "fit", runs_csv, "--law", "chinchilla")
    assert "mapped column 'validation'" in _bad(capsys, "fit", runs_csv, "--law", "chinchilla", "--map", "loss=validation")
    neg = df.copy()
    neg.loc[4, "N"] = -3
    assert "column 'N' has a non-positive value" in _bad(capsys, "fit", write("neg.csv", neg), "--law", "chinchilla")
    nan = df.copy()
    nan.loc[2, "loss"] = np.nan
    assert "column 'loss' has a missing or non-numeric value" in _bad(capsys, "fit", write("nan.csv", nan), "--law", "chinchilla")
    assert "more points than parameters" in _bad(capsys, "fit", write("few.csv", df.iloc[:4]), "--law", "chinchilla")
    assert "one single value" in _bad(capsys, "fit", write("one.csv", df[df.N == df.N.min()]), "--law", "chinchilla")
    assert "unknown law 'chinchila'" in _bad(capsys, "fit", write("ok.csv", df), "--law", "chinchila")
    assert "cannot parse holdout expression" in _bad(capsys, "fit", tmp_path / "ok.csv", "--law", "chinchilla", "--holdout", "N=>3")
    assert "no column 'Q'" in _bad(capsys, "fit", tmp_path / "ok.csv", "--law", "chinchilla", "--holdout", "Q>3")
    assert "selects no rows" in _bad(capsys, "fit", tmp_path / "ok.csv", "--law", "chinchilla", "--holdout", "N>1e30")
    assert "no such file" in _bad(capsys, "fit", tmp_path / "absent.csv", "--law", "chinchilla")
    (tmp_path / "broken.parquet").write_text("not parquet")
    assert "cannot read as a table" in _bad(capsys, "fit", tmp_path / "broken.parquet", "--law", "chinchilla")
    assert "unknown objective" in _bad(capsys, "fit", tmp_path / "ok.csv", "--law", "chinchilla", "--objective", "l1")
    assert "missing --law" in _bad(capsys, "fit", tmp_path / "ok.csv")
    assert "unknown published law" in _bad(capsys, "predict", "published:kaplan", "--at", "N=1e9")
    assert "no such fit file" in _bad(capsys, "predict", tmp_path / "nofit.json", "--at", "N=1e9")
    (tmp_path / "junk.json").write_text('{"hello": 1}')
    assert "not a fit result" in _bad(capsys, "predict", tmp_path / "junk.json", "--at", "N=1e9")
    assert "has no variable 'X'" in _bad(capsys, "predict", "published:hoffmann", "--at", "X=1e9")
    assert "needs 'D'" in _bad(capsys, "predict", "published:hoffmann", "--at", "N=1e9")
    assert "not a number" in _bad(capsys, "predict", "published:hoffmann", "--at", "N=big,D=1e9")
    assert "must be positive" in _bad(capsys, "predict", "published:hoffmann", "--at", "N=0,D=1e9")
    assert "not above the fitted irreducible loss" in _bad(capsys, "allocate", "published:hoffmann", "--loss", "1.5")
    assert "give --compute" in _bad(capsys, "allocate", "published:hoffmann")
    assert "no compute-optimal allocation" in _bad(capsys, "allocate", "published:steplaw-lr", "--compute", "1e20")
    assert "positive number of FLOPs" in _bad(capsys, "allocate", "published:hoffmann", "--compute", "-1")
    few = pd.concat([df[df.N == n].head(3) for n in df.N.unique()])
    assert "at least 3 usable budgets" in _bad(capsys, "isoflop", write("iso.csv", few))
    assert "no row has C == 'xx'" in _bad(capsys, "isoflop", "--example", "porian", "--where", "C=xx")
    assert "--where column 'dataset' not found" in _bad(capsys, "isoflop", "--example", "porian", "--where", "dataset=rw")
    assert "not both or neither" in _bad(capsys, "isoflop")


def test_isoflop_drops_edge_and_sparse_budgets_with_warnings():
    from scaletune.laws import isoflop

    rows = []
    for C in np.logspace(18, 21, 5):
        for n in np.logspace(7, 10, 9):
            d = C / (6 * n)
            rows.append({"C": C, "N": n, "D": d, "loss": 1.7 + 400 * n**-0.34 + 410 * d**-0.28})
    df = pd.DataFrame(rows)
    sparse = df[df.C == df.C.max()].iloc[::3]  # 3 sizes only
    edge = df[(df.C == df.C.min())].iloc[4:]  # minimum at the smallest remaining size: the grid edge
    data = pd.concat([df[(df.C != df.C.max()) & (df.C != df.C.min())], sparse, edge])
    res = isoflop(data, bootstrap=10)
    reasons = sorted(d["reason"] for d in res.dropped)
    assert len(res.optima) == 3 and len(reasons) == 2
    assert reasons[0].startswith("fewer than 5") and reasons[1].startswith("lowest loss at the edge")
    assert len(res.warnings) == 2


def test_fit_reads_parquet_and_jsonl_with_groups_and_weights(capsys, tmp_path):
    df = chinchilla_data(seed=4, n_sizes=6, n_tokens=6)
    df["model_id"] = df.groupby("N").ngroup()
    df["w"] = 1.0
    df.to_parquet(tmp_path / "runs.parquet")
    df.to_json(tmp_path / "runs.jsonl", orient="records", lines=True)
    a = run_json(
        capsys, "fit", tmp_path / "runs.parquet", "--law", "chinchilla", "--bootstrap", "20", "--groups", "model_id", "--weights", "w"
    )
    b = run_json(
        capsys, "fit", tmp_path / "runs.jsonl", "--law", "chinchilla", "--bootstrap", "20", "--groups", "model_id", "--weights", "w"
    )
    assert a["diagnostics"]["bootstrap"]["groups"] == 6
    # pandas writes JSON lines with 10 significant digits: the two fits agree to that precision
    assert a["params_"] == pytest.approx(b["params_"], rel=1e-6)
    assert a["intervals"]["alpha"] == pytest.approx(b["intervals"]["alpha"], rel=1e-4)
    assert "missing column 'size'" in _bad(capsys, "fit", tmp_path / "runs.jsonl", "--law", "chinchilla", "--groups", "size")


def test_user_law_from_a_python_file(capsys, tmp_path):
    (tmp_path / "my_laws.py").write_text(
        "from scaletune.laws import Law, register_law\n"
        "register_law(Law(name='cli_saturating', variables=('N',), params=('E', 'A', 'alpha'), formula='L = E + A N^-alpha',\n"
        "    model=lambda p, x: p['E'] + p['A'] * x['N'] ** -p['alpha'],\n"
        "    bounds={'E': (0, 10), 'A': (0, 1e6), 'alpha': (0, 3)},\n"
        "    start={'E': [1, 2], 'A': [10, 100, 1000], 'alpha': [0.1, 0.3, 0.6]}), replace=True)\n"
    )
    N = np.logspace(6, 9, 20)
    pd.DataFrame({"N": N, "loss": 1.8 + 300 * N**-0.3}).to_csv(tmp_path / "runs.csv", index=False)
    doc = run_json(
        capsys,
        "fit",
        tmp_path / "runs.csv",
        "--law",
        "cli_saturating",
        "--laws-from",
        tmp_path / "my_laws.py",
        "--bootstrap",
        "0",
        "--out",
        tmp_path / "fit.json",
    )
    assert doc["params_"]["alpha"] == pytest.approx(0.3, rel=1e-3)
    pred = run_json(capsys, "predict", tmp_path / "fit.json", "--at", "N=1e10", "--laws-from", tmp_path / "my_laws.py")
    assert pred["predictions"][0]["loss"] == pytest.approx(1.8 + 300 * 1e10**-0.3, rel=1e-4)
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    assert "error while loading user laws: RuntimeError: boom" in _bad(capsys, "laws", "--laws-from", tmp_path / "broken.py")
