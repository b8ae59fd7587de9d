"""Stability signals of run_lm against values computed by hand on the same weights and batch."""

import math

import pytest
import torch
import torch.nn.functional as F

from scaletune.train import run_lm
from scaletune.train.data import Batches
from scaletune.train.param import canonical_name
from scaletune.train.scheduler import torch_scheduler
from scaletune.train.signals import PROBE_SEQUENCES, SPIKE_THRESHOLD, SPIKE_WINDOW, loss_spikes
from scaletune.train.trainer import RunConfig, build_lm, make_optimizer

# width 32 under muP with base width 64: readout multiplier 1/m = 2, attention scale sqrt(32/2)/16 (heads fixed)
TINY = {"width": 32, "depth": 2, "heads": 2, "tokens": 2 * 128, "lr": 1e-2, "batch_size": 128, "seq_len": 32, "eval_tokens": 256}


def rms_norm(h, weight, eps=1e-6):
    return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * weight


def by_hand(model, x, heads, scale, mult):
    """Explicit forward pass with the model's weights: (per-layer max attention logit on the probe slice,
    output logits). Softmax attention, GELU (tanh), RMSNorm and the muP readout multiplier written out."""
    B, T = x.shape
    h = model.tok_emb.weight[x] + model.pos_emb.weight[:T]
    layer_max = []
    for blk in model.blocks:
        a = rms_norm(h, blk.norm1.weight)
        q, k, v = (a @ blk.attn.qkv.weight.T).view(B, T, 3, heads, -1).permute(2, 0, 3, 1, 4)
        if blk.attn.q_norm is not None:
            q, k = rms_norm(q, blk.attn.q_norm.weight), rms_norm(k, blk.attn.k_norm.weight)
        s = (q @ k.transpose(-2, -1)) * scale
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        layer_max.append(s[:PROBE_SEQUENCES].max().item())
        y = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, -1)
        h = h + y @ blk.attn.out.weight.T
        m = rms_norm(h, blk.norm2.weight)
        h = h + F.gelu(m @ blk.mlp.up.weight.T, approximate="tanh") @ blk.mlp.down.weight.T
    logits = (rms_norm(h, model.norm.weight) @ model.lm_head.weight.T) * mult
    return layer_max, logits


@pytest.mark.parametrize("qk_norm", [False, True])
def test_signals_match_a_hand_computation(qk_norm):
    config = {**TINY, "qk_norm": qk_norm}
    row = run_lm(config)
    first = row["curve"][0]
    assert first["step"] == 1

    cfg = RunConfig.from_dict(config)
    model, plan = build_lm(cfg)  # the same seeded init as the run
    x, y = Batches(cfg.batch_size // cfg.seq_len, cfg.seq_len, cfg.seed)()
    scale = math.sqrt(64 / 2) / 16
    layer_max, logits = by_hand(model, x, heads=2, scale=scale, mult=64 / 32)
    loss = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
    assert first["train_loss"] == pytest.approx(loss.item(), rel=1e-5)
    for i, value in enumerate(layer_max):
        assert first[f"attn_logit_max_l{i}"] == pytest.approx(value, rel=1e-5)
    assert first["attn_logit_max"] == pytest.approx(max(layer_max), rel=1e-5)
    assert first["out_logit_rms"] == pytest.approx(logits.pow(2).mean().sqrt().item(), rel=1e-5)
    assert first["out_logit_max"] == pytest.approx(logits.abs().max().item(), rel=1e-5)
    assert first["z_mean"] == pytest.approx(torch.logsumexp(logits, -1).mean().item(), rel=1e-5)

    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert first["grad_norm"] == pytest.approx(math.sqrt(sum(g.pow(2).sum().item() for g in grads)), rel=1e-5)

    # update ratio: copies of the parameters before and after the run's first (clipped AdamW) step
    optimizer = make_optimizer(cfg, model, plan)
    torch_scheduler(optimizer, cfg.make_schedule())
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer.step()
    for role in ("input", "hidden", "readout", "vector"):
        names = [n for n in before if plan.params[canonical_name(n)].role == role]
        delta = sum((dict(model.named_parameters())[n].detach() - before[n]).pow(2).sum().item() for n in names)
        base = sum(before[n].pow(2).sum().item() for n in names)
        assert first[f"update_ratio_{role}"] == pytest.approx(math.sqrt(delta / base), rel=1e-4)


def test_signal_cadence_and_summary():
    base = {**TINY, "tokens": 12 * 128, "eval_every": 4}
    default = run_lm(base)
    signal_steps = [p["step"] for p in default["curve"] if "grad_norm" in p]
    assert signal_steps == [1, 4, 8, 12]  # step 1 and each evaluation
    assert default["attn_logit_max"] == max(p["attn_logit_max"] for p in default["curve"] if "grad_norm" in p)
    assert default["out_logit_max"] == max(p["out_logit_max"] for p in default["curve"] if "grad_norm" in p)
    assert default["spikes"] == 0 and default["max_spike"] is None  # 12 steps: the 20-step window never fills

    every5 = run_lm({**base, "signals_every": 5})
    assert [p["step"] for p in every5["curve"] if "grad_norm" in p] == [1, 5, 10, 12]
    assert every5["loss"] == default["loss"]  # measuring does not change training

    off = run_lm({**base, "signals_every": 0})
    assert not any("grad_norm" in p or "attn_logit_max" in p for p in off["curve"])
    assert (off["spikes"], off["max_spike"], off["attn_logit_max"], off["out_logit_max"]) == (None,) * 4
    assert off["loss"] == default["loss"]


def test_z_loss_lowers_the_log_partition():
    """z-loss (coef * mean z^2 added to the loss) pulls the log-partition towards 0; at 0.1 it must show."""
    base = {**TINY, "tokens": 30 * 128, "lr": 3e-2, "signals_every": 30}
    plain, zl = run_lm(base), run_lm({**base, "z_loss": 0.1})
    assert abs(zl["curve"][-1]["z_mean"]) < 0.5 * abs(plain["curve"][-1]["z_mean"])


def test_loss_spikes_on_a_synthetic_sequence():
    assert (SPIKE_THRESHOLD, SPIKE_WINDOW) == (0.1, 20)
    flat = [3.0] * 25
    assert loss_spikes(flat) == (0, 0.0)
    # one isolated spike of +16.7%, a sub-threshold bump (+8.3%), a two-step spike counted once (+13.3%, +15%)
    seq = flat + [3.5] + [3.0] * 10 + [3.25] + [3.0] * 10 + [3.4, 3.45] + [3.0] * 5
    count, largest = loss_spikes(seq)
    assert count == 2 and largest == pytest.approx(3.5 / 3.0 - 1)
    assert loss_spikes([3.0] * 5 + [10.0]) == (0, None)  # window not yet full
    assert loss_spikes(flat + [3.2], threshold=0.05) == (1, pytest.approx(3.2 / 3 - 1))
    falling = [5.0 - 0.05 * i for i in range(40)]
    count, largest = loss_spikes(falling + [float("nan")])
    assert count == 0 and largest < 0  # a falling loss never jumps; NaN is divergence, not a spike size
