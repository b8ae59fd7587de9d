"""scaletune.train: the torch side — parameterisations (SP, muP, CompleteP) for any model, the built-in
proxy LM on bundled text, the trainer (`run_lm`), the coordinate check and a PyTorch adapter for schedules.

    from scaletune.train import run_lm
    row = run_lm({"width": 64, "depth": 2, "tokens": 200_000, "lr": 3e-3})

Imports torch; nothing outside `scaletune.train`/`scaletune.study` needs it.
"""

from scaletune.train.model import PRESETS, LMConfig, TransformerLM, count_params, flops_per_token
from scaletune.train.param import ParamInfo, ParamPlan, canonical_name, infer_roles, make_plan, parameterize
from scaletune.train.scheduler import torch_scheduler
from scaletune.train.trainer import RunConfig, build_lm, run_lm

__all__ = [
    "PRESETS",
    "LMConfig",
    "TransformerLM",
    "count_params",
    "flops_per_token",
    "ParamInfo",
    "ParamPlan",
    "canonical_name",
    "infer_roles",
    "make_plan",
    "parameterize",
    "torch_scheduler",
    "RunConfig",
    "build_lm",
    "run_lm",
]
