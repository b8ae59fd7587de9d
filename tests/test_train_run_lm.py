"""The workload contract `run_lm(config, report) -> row` that the study stage builds on."""

import math

import pytest

from scaletune.errors import ScaletuneError
from scaletune.train import count_params, run_lm
from scaletune.train.model import LMConfig, TransformerLM

TINY = {"width": 32, "depth": 2, "tokens": 24 * 1024, "lr": 1e-2, "batch_size": 1024, "seq_len": 64, "eval_tokens": 4096}


def test_run_lm_returns_a_run_table_row_and_learns():
    row = run_lm(TINY)
    for key in (
        "N",
        "N_nonembed",
        "D",
        "C",
        "width",
        "depth",
        "heads",
        "lr",
        "batch_size",
        "schedule",
        "warmup",
        "param",
        "seed",
        "loss",
        "status",
        "seconds",
        "tokens_per_s",
        "curve",
    ):
        assert key in row
    assert row["status"] == "ok"
    assert row["D"] == 24 * 1024 and row["C"] == 6 * row["N"] * row["D"]
    assert row["N"] == sum(p.numel() for p in TransformerLM(LMConfig(width=32, depth=2, seq_len=64)).parameters())
    assert row["schedule"].startswith("cosine:steps=24,lr=0.01,warmup=1")
    curve = row["curve"]
    assert [c["step"] for c in curve] == list(range(1, 25))
    evaluated = [c for c in curve if c["val_loss"] is not None]
    assert [c["step"] for c in evaluated] == [3, 6, 9, 12, 15, 18, 21, 24]
    # byte-level loss starts near ln 256 = 5.55 nats and must drop well below it in 24 steps
    assert curve[0]["train_loss"] == pytest.approx(math.log(256), abs=0.1)
    assert row["loss"] == evaluated[-1]["val_loss"] < 3.6
    assert row["bits_per_byte"] == pytest.approx(row["loss"] / math.log(2))


def test_run_lm_is_deterministic_given_seed():
    a, b = run_lm({**TINY, "tokens": 8192}), run_lm({**TINY, "tokens": 8192})
    c = run_lm({**TINY, "tokens": 8192, "seed": 1})
    assert a["loss"] == b["loss"]
    assert a["loss"] != c["loss"]


def test_report_callback_prunes():
    seen = []

    def report(step, val_loss):
        seen.append((step, val_loss))
        return step >= 6

    row = run_lm(TINY, report)
    assert row["status"] == "pruned"
    assert [s for s, _ in seen] == [3, 6]
    assert row["D"] == 6 * 1024 and row["loss"] == seen[-1][1]


def test_divergence_is_reported_not_raised():
    nan = run_lm({**TINY, "lr": 50.0, "param": "sp", "grad_clip": 0})  # loss becomes NaN at step 3
    assert nan["status"] == "diverged" and math.isnan(nan["loss"]) and nan["D"] == 3 * 1024
    high = run_lm({**TINY, "lr": 1.0, "param": "sp"})  # finite but > ln256 + 1.5 nats for 8 steps running
    assert high["status"] == "diverged" and math.isnan(high["loss"]) and high["D"] < TINY["tokens"]
    assert all(c["train_loss"] > math.log(256) + 1.5 for c in high["curve"][-8:])


def test_a_spike_that_recovers_is_not_a_divergence():
    row = run_lm({**TINY, "lr": 0.3, "param": "sp"})
    assert max(c["train_loss"] for c in row["curve"]) > math.log(256) + 1.5
    assert row["status"] == "ok" and row["loss"] < 4.0


@pytest.mark.parametrize(
    "bad, word",
    [
        ({"lr": -1}, "lr"),
        ({"batch_size": 1000}, "multiple of seq_len"),
        ({"learning_rate": 1}, "learning_rate"),
        ({"param": "ntk"}, "ntk"),
        ({"schedule": "zigzag"}, "zigzag"),
        ({"width": 48, "heads": 5}, "divisible"),
        ({"tokens": 10}, "less than one batch"),
        ({"schedule": "cosine:steps=5"}, "leave them out"),
        ({"param": "completep", "alpha": 0.2}, "alpha"),
        ({"optimizer": "lion"}, "lion"),
        ({"width": "wide"}, "width"),
    ],
)
def test_bad_configs_name_the_problem(bad, word):
    with pytest.raises(ScaletuneError, match=word):
        run_lm({**TINY, **bad})


def test_param_counts_match_the_model():
    for kw in (dict(width=64, depth=2), dict(width=96, depth=3, heads=3, mlp="swiglu", tied=True, qk_norm=True)):
        cfg = LMConfig(**kw)
        model = TransformerLM(cfg)
        total = sum(p.numel() for p in model.parameters())
        embed = model.tok_emb.weight.numel() + model.pos_emb.weight.numel() + (0 if cfg.tied else model.lm_head.weight.numel())
        assert count_params(cfg) == {"N": total, "N_nonembed": total - embed}


@pytest.mark.parametrize(
    "extra",
    [
        {"param": "completep", "depth": 3, "alpha": 0.5, "base_depth": 2},
        {"param": "sp", "optimizer": "sgd", "lr": 0.3},
        {"tied": True, "mlp": "swiglu", "qk_norm": True, "z_loss": 1e-4, "schedule": "wsd:cooldown=0.3,shape=1-sqrt"},
        {"width": 128, "heads": 2, "precision": "auto", "schedule": "power:a=0.5,b=0.3,tokens_per_step=1024"},
    ],
)
def test_variants_train(extra):
    row = run_lm({**TINY, "tokens": 12 * 1024, "eval_every": 100, **extra})
    assert row["status"] == "ok" and row["loss"] < 5.0
    assert row["param"] == extra.get("param", "mup")


def test_flops_per_token_matches_torch_flop_counter():
    """Matmul FLOPs of one forward+backward, counted by torch, equal flops_per_token(attention=False);
    the attention term is the documented analytic 3 * 2*2*depth*seq_len*width (torch's CPU counter
    does not see inside scaled_dot_product_attention)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from scaletune.train.model import flops_per_token

    for kw in (dict(width=64, depth=2, seq_len=32), dict(width=96, depth=3, heads=3, mlp="swiglu", seq_len=16, tied=True)):
        cfg = LMConfig(**kw)
        model = TransformerLM(cfg)
        x = torch.randint(0, 256, (2, cfg.seq_len))
        with FlopCounterMode(display=False) as counter:
            model(x, x)[1].backward()
        assert counter.get_total_flops() == flops_per_token(cfg, attention=False) * x.numel()
        assert flops_per_token(cfg) - flops_per_token(cfg, attention=False) == 3 * 4 * cfg.depth * cfg.seq_len * cfg.width


def test_bundled_corpus_split_and_batches():
    import hashlib

    import torch

    from scaletune.train import data

    raw = data.corpus_bytes()
    assert len(raw) == 5_057_198  # SOURCE.md: SHA-256 of the uncompressed text
    assert hashlib.sha256(raw.tobytes()).hexdigest() == "da68ca4e8201d41a12c1d5e82d967bda85105f1dabe823d5735138bccabdd387"
    train, val = data.split("train"), data.split("val")
    assert len(train) + len(val) == len(raw) and len(val) == 252_860
    assert bytes(val[-60:].tolist()).decode().strip().endswith("hastily lead away!\n\n[Exeunt.]")  # The Winter's Tale ends the corpus
    x1, y1 = data.Batches(4, 16, seed=3)()
    x2, y2 = data.Batches(4, 16, seed=3)()
    assert torch.equal(x1, x2) and torch.equal(x1[:, 1:], y1[:, :-1])
    vx, vy = data.val_windows(1024, 64)
    assert vx.shape == (16, 64) and int(vx.max()) < 256
