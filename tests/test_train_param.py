"""SP / muP / CompleteP plans: roles, rules, persistence (save/load, DDP), coordinate check."""

import copy
import io
import json
import math

import pytest
import torch
from torch import nn

from scaletune.errors import ScaletuneError
from scaletune.schedules import Schedule
from scaletune.train import LMConfig, ParamPlan, TransformerLM, make_plan, parameterize, torch_scheduler
from scaletune.train.coordcheck import coord_check
from scaletune.train.data import Batches


def lm(width=64, depth=2, tied=False, seed=0):
    torch.manual_seed(seed)
    return TransformerLM(LMConfig(width=width, depth=depth, heads=2, seq_len=32, tied=tied))


def test_lm_roles_and_mup_rules():
    model = lm(width=128)
    plan = parameterize(model, "mup", width=128, base_width=32, init_std=0.02)
    rows = {r["name"]: r for r in plan.table(lr=1e-2, weight_decay=0.1, eps=1e-8)}
    assert rows["tok_emb.weight"]["role"] == "input" and rows["pos_emb.weight"]["role"] == "input"
    assert rows["lm_head.weight"]["role"] == "readout"
    assert rows["blocks.0.attn.qkv.weight"]["role"] == "hidden"
    assert rows["blocks.1.norm2.weight"]["role"] == "vector" and rows["norm.weight"]["role"] == "vector"
    m = 4.0
    hid = rows["blocks.0.mlp.up.weight"]
    assert hid["lr"] == pytest.approx(1e-2 / m) and hid["weight_decay"] == pytest.approx(0.1 * m)
    assert hid["eps"] == pytest.approx(1e-8 / m) and hid["init_std"] == pytest.approx(0.02 / math.sqrt(m))
    assert rows["tok_emb.weight"]["lr"] == 1e-2 and rows["tok_emb.weight"]["init_std"] == 0.02
    assert rows["lm_head.weight"]["lr"] == 1e-2 and rows["lm_head.weight"]["out_mult"] == pytest.approx(1 / m)
    assert rows["norm.weight"]["weight_decay"] == 0.0
    # the init really happened and the forward multiplier really acts
    assert model.blocks[0].mlp.up.weight.std().item() == pytest.approx(0.01, rel=0.05)
    h = torch.randn(3, 128)
    assert torch.allclose(model.lm_head(h), h @ model.lm_head.weight.T / m)


def test_sp_is_mup_at_base_width_and_differs_elsewhere():
    for width, same in ((32, True), (128, False)):
        sp = make_plan(lm(width), "sp", width=width, base_width=32)
        mup = make_plan(lm(width), "mup", width=width, base_width=32)
        assert (sp.table(1e-2) == mup.table(1e-2)) is same


def test_completep_depth_rules_and_branch_multipliers():
    model = lm(width=64, depth=4)
    plan = parameterize(model, "completep", width=64, base_width=32, depth=4, base_depth=2, alpha=0.5)
    rows = {r["name"]: r for r in plan.table(lr=1e-2, eps=1e-8)}
    m, l, a = 2.0, 2.0, 0.5
    assert rows["blocks.3.attn.qkv.weight"]["lr"] == pytest.approx(1e-2 / m * l ** (a - 1))
    assert rows["blocks.3.attn.qkv.weight"]["eps"] == pytest.approx(1e-8 / m * l**-a)
    assert rows["blocks.0.norm1.weight"]["lr"] == pytest.approx(1e-2 * l ** (a - 1))
    assert rows["norm.weight"]["lr"] == 1e-2 and rows["tok_emb.weight"]["lr"] == 1e-2
    assert rows["blocks.2.mlp.down.weight"]["out_mult"] == pytest.approx(l**-a)
    assert rows["blocks.2.attn.out.weight"]["out_mult"] == pytest.approx(l**-a)
    assert rows["blocks.2.attn.qkv.weight"]["out_mult"] == 1.0
    with pytest.raises(ScaletuneError, match="alpha"):
        make_plan(model, "completep", width=64, depth=4, alpha=0.3)


@pytest.mark.parametrize("param", ["sp", "mup"])
def test_width_only_parameterisations_ignore_depth(param):
    """The depth rules are CompleteP's: under SP and muP a deeper model than base_depth keeps every rate and
    epsilon of the rule table (an earlier version divided muP's in-block rates, and SP's norm gains, by l)."""
    plan = make_plan(lm(width=64, depth=4), param, width=64, base_width=32, depth=4, base_depth=1)
    rows = {r["name"]: r for r in plan.table(lr=1e-2, eps=1e-8)}
    hidden = 1e-2 / 2 if param == "mup" else 1e-2
    assert rows["blocks.3.attn.qkv.weight"]["lr"] == pytest.approx(hidden)
    assert rows["blocks.0.norm1.weight"]["lr"] == pytest.approx(1e-2)
    assert rows["blocks.3.attn.qkv.weight"]["eps"] == pytest.approx(1e-8 / 2 if param == "mup" else 1e-8)
    assert all(r["out_mult"] in (1.0, 0.5) for r in rows.values())  # only muP's readout 1/m, no branch multipliers


def test_arbitrary_model_roles_inferred_and_overridden():
    mlp = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    plan = make_plan(mlp, "mup", width=64, base_width=16)
    roles = {n: i.role for n, i in plan.params.items()}
    assert roles == {
        "0.weight": "input",
        "0.bias": "vector",
        "2.weight": "hidden",
        "2.bias": "vector",
        "4.weight": "readout",
        "4.bias": "vector",
    }
    assert plan.multipliers == {"4": 0.25}
    forced = make_plan(mlp, "mup", width=64, base_width=16, roles={r"^2\.weight$": "readout"})
    assert forced.params["2.weight"].role == "readout"
    sgd = make_plan(mlp, "mup", width=64, base_width=16, optimizer="sgd")
    assert sgd.params["0.weight"].lr_mult == 4 and sgd.params["2.weight"].lr_mult == 1
    assert sgd.params["4.weight"].lr_mult == 4
    with pytest.raises(ScaletuneError, match="branch_out"):
        blocks = nn.ModuleList([nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))])
        make_plan(nn.ModuleDict({"blocks": blocks, "lm_head": nn.Linear(8, 2)}), "completep", width=8, depth=1)


def test_tied_embedding_is_one_input_parameter_with_readout_multiplier():
    model = lm(width=64, tied=True)
    plan = parameterize(model, "mup", width=64, base_width=16)
    info = plan.params["tok_emb.weight"]
    assert info.tied and info.role == "input" and "lm_head.weight" not in plan.params
    assert plan.table(1e-2)[0]["out_mult"] == pytest.approx(0.25)


def _one_step(model, plan, batch, lr=1e-2):
    opt = torch.optim.AdamW(plan.param_groups(model, lr, weight_decay=0.1), betas=(0.9, 0.95))
    x, y = batch
    out = model(x, y)
    loss = out[1] if isinstance(out, tuple) else out
    loss.backward()
    opt.step()
    return {n.removeprefix("module."): p.detach().clone() for n, p in model.named_parameters()}


def _group_signature(plan, model):
    return [(g["names"], g["lr"], g["weight_decay"], g["eps"]) for g in plan.param_groups(model, 1e-2, 0.1)]


def test_saved_and_loaded_model_has_same_groups_and_next_step():
    model = lm(width=64)
    plan = parameterize(model, "mup", width=64, base_width=16)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "plan": plan.to_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf)
    fresh = lm(width=64, seed=123)  # different init, then overwritten by the checkpoint
    fresh.load_state_dict(ckpt["model"])
    plan2 = ParamPlan.from_dict(json.loads(json.dumps(ckpt["plan"])))
    plan2.attach(fresh)
    assert plan2 == plan
    assert _group_signature(plan2, fresh) == _group_signature(plan, model)
    batch = Batches(4, 32, seed=0)()
    a, b = _one_step(model, plan, batch), _one_step(fresh, plan2, batch)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a whole pickled module keeps its forward multipliers too
    buf = io.BytesIO()
    torch.save(fresh, buf)
    buf.seek(0)
    whole = torch.load(buf, weights_only=False)
    h = torch.randn(2, 64)
    assert torch.allclose(whole.lm_head(h), fresh.lm_head(h))


def test_ddp_wrapped_model_has_same_groups_and_next_step(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = lm(width=64)
        plan = parameterize(model, "mup", width=64, base_width=16)
        twin = copy.deepcopy(model)
        wrapped = DDP(twin)
        wplan = make_plan(wrapped, "mup", width=64, base_width=16)
        wplan.attach(wrapped)
        assert wplan == plan
        assert _group_signature(wplan, wrapped) == _group_signature(plan, model)
        batch = Batches(4, 32, seed=0)()
        a, b = _one_step(model, plan, batch), _one_step(wrapped, wplan, batch)
        assert all(torch.equal(a[k], b[k]) for k in a)
    finally:
        dist.destroy_process_group()


def test_scheduler_adapter_follows_schedule_for_every_group():
    model = lm(width=64)
    plan = make_plan(model, "mup", width=64, base_width=16)
    groups = plan.param_groups(model, lr=3e-3)
    opt = torch.optim.AdamW(groups)
    sched = Schedule.parse("wsd:steps=20,lr=3e-3,warmup=4,cooldown=0.25,shape=1-sqrt")
    lr_sched = torch_scheduler(opt, sched)
    want = sched.lrs()
    for step in range(20):
        for g in opt.param_groups:
            assert g["lr"] == pytest.approx(want[step] * g["lr_mult"], rel=1e-12)
        opt.step()
        lr_sched.step()
    # warm-up (step+1)/4 of the peak; stable; 1-sqrt cooldown from step 15 (final reached at step 20)
    assert want[0] == pytest.approx(3e-3 / 4) and want[10] == pytest.approx(3e-3)
    assert want[19] == pytest.approx(3e-3 * (1 - math.sqrt(4 / 5)))


@pytest.fixture(scope="module")
def coords():
    kw = dict(widths=(32, 64, 128, 256), steps=3, config={"batch_size": 512, "seq_len": 64})
    return {p: coord_check(param=p, **kw) for p in ("sp", "mup")}


def test_coord_check_flat_under_mup_growing_under_sp(coords):
    # measured (steps=3, widths 32..256): SP hidden +1.25, readout +0.97, residual +1.6;
    # muP hidden -0.14, readout -0.02, residual -0.20 (broken muPs: see the next test).
    sp, mup = coords["sp"].kind_slopes(), coords["mup"].kind_slopes()
    assert abs(mup["hidden"]) < 0.4 and abs(mup["readout"]) < 0.3 and abs(mup["residual"]) < 0.4
    assert sp["hidden"] > 0.8 and sp["readout"] > 0.5 and sp["residual"] > 0.8
    assert abs(sp["input"]) < 0.1 and abs(mup["input"]) < 0.1  # embeddings: width-independent in both
    table = coords["mup"].table_
    assert set(table["width"]) == {32, 64, 128, 256} and set(table["step"]) == {0, 1, 2, 3}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's import of torch.jit
def test_compiled_wrapper_names_map_to_the_same_plan():
    model = lm(width=64)
    plan = make_plan(model, "mup", width=64, base_width=16)
    compiled = torch.compile(model)  # not run: only its parameter names (prefixed _orig_mod.) matter here
    assert next(iter(dict(compiled.named_parameters()))).startswith("_orig_mod.")
    assert make_plan(compiled, "mup", width=64, base_width=16) == plan
    assert _group_signature(plan, compiled) == _group_signature(plan, model)


def test_cli_import_does_not_pull_in_torch():
    import subprocess
    import sys

    code = "import sys, scaletune.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("fault, kind", [("hidden_lr", "hidden"), ("readout_mult", "readout")])
def test_coord_check_catches_a_broken_mup(monkeypatch, fault, kind):
    """The two classic porting bugs: hidden Adam LR not divided by m; readout multiplier never applied."""
    import dataclasses

    import scaletune.train.coordcheck as cc_module

    real = cc_module.build_lm

    def broken_build(cfg):
        model, plan = real(cfg)
        if fault == "hidden_lr":
            plan.params = {n: dataclasses.replace(i, lr_mult=1.0) if i.role == "hidden" else i for n, i in plan.params.items()}
        else:
            plan.multipliers = {k: 1.0 for k in plan.multipliers}
            plan.attach(model)
        return model, plan

    monkeypatch.setattr(cc_module, "build_lm", broken_build)
    slopes = coord_check((32, 64, 128, 256), "mup", steps=3, config={"batch_size": 512, "seq_len": 64}).kind_slopes()
    limit = {"hidden": 0.4, "readout": 0.3}[kind]  # the muP thresholds of the test above
    assert slopes[kind] > limit  # measured: hidden +1.26 / readout +0.89


def test_depth_coord_check_flat_under_completep_growing_under_mup():
    # the final residual stream after 5 steps at width 64, depths 2..16; measured: muP +1.02, CompleteP -0.01
    kw = dict(steps=5, axis="depth", config={"batch_size": 512, "seq_len": 64, "width": 64, "lr": 2e-3})
    last = {p: coord_check((2, 4, 8, 16), p, **kw).slopes().set_index("layer").loc["blocks.-1", "slope"] for p in ("mup", "completep")}
    assert abs(last["completep"]) < 0.07
    assert last["mup"] > 0.5


def test_completep_branch_out_pattern_reaches_non_linear_modules():
    class Conv1D(nn.Module):  # weight stored (in, out), as Hugging Face GPT-2's
        def __init__(self, n_in, n_out):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.02)

        def forward(self, x):
            return x @ self.weight

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc, self.c_proj = Conv1D(16, 64), Conv1D(64, 16)

        def forward(self, x):
            return x + self.c_proj(torch.relu(self.c_fc(x)))

    model = nn.ModuleDict(
        {"wte": nn.Embedding(10, 16), "h": nn.ModuleList([Block() for _ in range(4)]), "lm_head": nn.Linear(16, 10, bias=False)}
    )
    plan = parameterize(model, "completep", width=16, base_width=16, depth=4, base_depth=1, alpha=1.0, branch_out=r"\.c_proj$")
    assert {k: v for k, v in plan.multipliers.items() if k != "lm_head"} == {f"h.{i}.c_proj": 0.25 for i in range(4)}
    x = torch.randn(3, 64)
    assert torch.allclose(model["h"][2].c_proj(x), x @ model["h"][2].c_proj.weight * 0.25)
