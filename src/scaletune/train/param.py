"""Parameterisations SP, muP and CompleteP for any ``nn.Module``, with metadata kept outside the tensors.

A parameterisation says, for every parameter, how to initialise it and which learning rate, weight decay
and Adam epsilon it gets, as a function of the width multiplier ``m = width / base_width`` and the depth
multiplier ``l = depth / base_depth``. Base width and depth are numbers, not a second model: at
``width == base_width`` and ``depth == base_depth`` every parameterisation is the same model with the same
hyperparameters, so a learning rate tuned there transfers.

Roles (Tensor Programs V, "input / hidden / output weights"):

    input    embeddings and first layers: fan-in does not grow with width
    hidden   matrices whose fan-in and fan-out both grow with width
    readout  the output layer (fan-out fixed, e.g. the vocabulary)
    vector   biases and norm gains (one dimension or none)

``in_block`` marks parameters inside residual blocks (depth scaling); ``branch_out`` marks the modules whose
output is added to the residual stream (CompleteP multiplies it by ``l^-alpha``).

Rules, with sigma the init std of a hidden matrix at base width, eta the peak LR, lam the weight decay
(AdamW, decoupled: PyTorch multiplies it by the LR), eps Adam's epsilon:

    role / quantity      SP                muP (TP5 Adam table)        CompleteP(alpha), on top of muP
    input init std       sigma_in          sigma_in                    .
    hidden init std      sigma/sqrt(m)     sigma/sqrt(m)               .
    readout init std     sigma/sqrt(m)     sigma/sqrt(m) (or 0)        .
    readout multiplier   1                 1/m  (forward hook)         .
    branch multiplier    1                 1                           l^-alpha (forward hook)
    Adam LR  input       eta               eta                         .
    Adam LR  hidden      eta               eta/m                       eta/m * l^(alpha-1)
    Adam LR  readout     eta               eta (the 1/m is in forward) .
    Adam LR  vector      eta               eta                         eta * l^(alpha-1) if in a block
    weight decay matrix  lam               lam (hidden: lam*m)         hidden: lam*m
    weight decay vector  0                 0                           0
    Adam eps hidden      eps               eps/m                       eps/m * l^-alpha
    Adam eps vector      eps               eps                         eps * l^-alpha if in a block
    SGD LR               eta               input, readout, vector: eta*m; hidden: eta

The readout uses the output-multiplier form of muP (as the ``mup`` package's MuReadout), so a readout tied
to the input embedding keeps one consistent rule (constant Adam LR, embedding init). Hidden weight decay
grows with m so that lr*wd, the decoupled decay per step, is width-independent (the CompleteP authors'
reference code does the same). Init std of a hidden matrix assumes its fan-in is proportional to width.

Metadata lives in a `ParamPlan`, a plain mapping from parameter name to `ParamInfo`; names are
canonicalised (``module.`` from DDP, ``_orig_mod.`` from torch.compile, ``_fsdp_wrapped_module.`` removed),
so the plan of a saved-and-loaded or wrapped model finds the same parameters. `ParamPlan.to_dict` /
`from_dict` round-trip through JSON.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from scaletune.errors import ScaletuneError

PARAMS = ("sp", "mup", "completep")
ROLES = ("input", "hidden", "readout", "vector")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")
# Module names that usually hold the readout / the last layer of a residual branch (overridable).
READOUT_PATTERN = r"(^|\.)(lm_head|readout|unembed|unembedding|output|classifier|head|fc_out)$"
BRANCH_OUT_PATTERN = r"(^|\.)(out|out_proj|o_proj|c_proj|proj|down|down_proj|fc2|w2|wo)$"


def canonical_name(name: str) -> str:
    """Strip wrapper prefixes (DDP, torch.compile, FSDP) anywhere in a dotted parameter/module name."""
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace("." + prefix, ".")
        while name.startswith(prefix):
            name = name[len(prefix) :]
    return name


@dataclass(frozen=True)
class ParamInfo:
    """Everything the parameterisation decided for one parameter (multipliers relative to the base)."""

    role: str
    shape: tuple[int, ...]
    in_block: bool
    init_std: float  # 0 = leave as is (vectors keep ones/zeros)
    lr_mult: float  # effective LR = base LR * lr_mult * schedule
    wd_mult: float  # effective decoupled weight decay = weight_decay * wd_mult
    eps_mult: float  # effective Adam eps = eps * eps_mult
    tied: bool = False  # also used as the readout (weight tying)


@dataclass
class ParamPlan:
    """The parameterisation of one model: per-parameter `ParamInfo` and per-module forward multipliers."""

    param: str
    width: float
    base_width: float
    depth: float
    base_depth: float
    alpha: float
    params: dict[str, ParamInfo]
    multipliers: dict[str, float] = field(default_factory=dict)  # module name -> output multiplier
    optimizer: str = "adamw"
    readout: str | None = None  # name of the readout module

    @property
    def width_mult(self) -> float:
        return self.width / self.base_width

    @property
    def depth_mult(self) -> float:
        return self.depth / self.base_depth

    # ------------------------------------------------------------------ applying to a model
    def init_(self, model: nn.Module) -> None:
        """Re-initialise every matrix with its planned std (normal); vectors are left as they are."""
        named = _named(model)
        with torch.no_grad():
            for name, info in self.params.items():
                if info.init_std > 0:
                    named[name].normal_(0.0, info.init_std)
                elif info.role == "readout" and info.init_std == 0:
                    named[name].zero_()

    def attach(self, model: nn.Module) -> None:
        """Install the forward multipliers (readout 1/m, CompleteP branch l^-alpha) as forward hooks.

        Idempotent: a module that already carries a scaletune multiplier gets it replaced, so calling this
        again after `torch.load` or on a wrapped model is safe.
        """
        modules = {canonical_name(n): m for n, m in model.named_modules()}
        for name, mult in self.multipliers.items():
            if name not in modules:
                raise ScaletuneError(f"parameter plan names module {name!r}, which the model does not have")
            module = modules[name]
            for key, hook in list(module._forward_hooks.items()):
                if isinstance(hook, OutputMultiplier):
                    del module._forward_hooks[key]
            if mult != 1.0:
                module.register_forward_hook(OutputMultiplier(mult))

    def param_groups(self, model: nn.Module, lr: float, weight_decay: float = 0.0, eps: float = 1e-8) -> list[dict]:
        """Optimizer parameter groups (one per distinct lr/wd/eps), each with ``initial_lr`` and names.

        Use with ``torch.optim.AdamW(groups, ...)`` or ``torch.optim.SGD(groups, ...)`` (SGD ignores eps).
        Every trainable parameter of ``model`` must be in the plan, and every planned one in the model.
        """
        named = _named(model)
        missing = sorted(set(named) - set(self.params))
        extra = sorted(set(self.params) - set(named))
        if missing or extra:
            raise ScaletuneError(f"plan and model disagree: not planned {missing[:5]}, not in model {extra[:5]}")
        groups: dict[tuple[float, float, float], dict] = {}
        for name, info in self.params.items():
            key = (info.lr_mult, info.wd_mult, info.eps_mult)
            group = groups.setdefault(
                key,
                {
                    "params": [],
                    "names": [],
                    "lr": lr * info.lr_mult,
                    "initial_lr": lr * info.lr_mult,
                    "lr_mult": info.lr_mult,
                    "weight_decay": weight_decay * info.wd_mult,
                    "eps": eps * info.eps_mult,
                },
            )
            group["params"].append(named[name])
            group["names"].append(name)
        return list(groups.values())

    def table(self, lr: float, weight_decay: float = 0.0, eps: float = 1e-8) -> list[dict[str, Any]]:
        """One row per parameter: role, shape, init std, effective LR, weight decay and eps, multiplier."""
        rows = []
        for name, info in self.params.items():
            module = name.rsplit(".", 1)[0] if "." in name else ""
            rows.append(
                {
                    "name": name,
                    "role": info.role + (" (tied)" if info.tied else ""),
                    "shape": "x".join(map(str, info.shape)),
                    "in_block": info.in_block,
                    "init_std": info.init_std,
                    "lr": lr * info.lr_mult,
                    "weight_decay": weight_decay * info.wd_mult,
                    "eps": eps * info.eps_mult,
                    "out_mult": self.multipliers.get(self.readout if info.tied else module, 1.0),
                }
            )
        return rows

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["params"] = {k: {**asdict(v), "shape": list(v.shape)} for k, v in self.params.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ParamPlan":
        data = dict(data)
        data["params"] = {k: ParamInfo(**{**v, "shape": tuple(v["shape"])}) for k, v in data["params"].items()}
        return cls(**data)


class OutputMultiplier:
    """Forward hook multiplying a module's output by a constant (picklable, so torch.save keeps it)."""

    def __init__(self, mult: float):
        self.mult = float(mult)

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return output * self.mult

    def __repr__(self) -> str:
        return f"OutputMultiplier({self.mult:g})"


def _named(model: nn.Module) -> dict[str, nn.Parameter]:
    return {canonical_name(n): p for n, p in model.named_parameters() if p.requires_grad}


def infer_roles(
    model: nn.Module,
    roles: Mapping[str, str] | None = None,
    blocks: str | None = None,
) -> tuple[dict[str, str], dict[str, bool], str | None]:
    """Infer each parameter's role; returns (role by name, in_block by name, readout module name).

    Rules, in order: ``roles`` (``{regex: role}``, searched in parameter names, first match wins);
    weights of ``nn.Embedding`` are input; the readout is the module whose name matches READOUT_PATTERN,
    else the last ``nn.Linear`` (a readout sharing its weight with an embedding is the tied readout);
    without embeddings the first Linear/Conv is the input layer; other tensors with >= 2 dimensions are
    hidden, the rest vectors. ``in_block``: the name matches ``blocks`` (regex) or, by default, passes
    through an entry of an ``nn.ModuleList``.
    """
    for role in (roles or {}).values():
        if role not in ROLES:
            raise ScaletuneError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    modules = list(_canon_modules(model).items())
    linears = [(n, m) for n, m in modules if isinstance(m, nn.Linear)]
    readout_mod = next((n for n, _ in reversed(linears) if re.search(READOUT_PATTERN, n)), None)
    if readout_mod is None and linears:
        readout_mod = linears[-1][0]
    readout_weight = dict(modules)[readout_mod].weight if readout_mod is not None else None
    has_embedding = any(isinstance(m, nn.Embedding) for _, m in modules)
    first_layer = None
    if not has_embedding:
        first_layer = next((n for n, m in modules if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)
    list_prefixes = [n + "." for n, m in modules if isinstance(m, nn.ModuleList) and n]

    module_of = dict(modules)
    role_of: dict[str, str] = {}
    in_block: dict[str, bool] = {}
    for name, p in _named(model).items():
        mname = name.rsplit(".", 1)[0] if "." in name else ""
        module = module_of.get(mname)
        role = next((r for pat, r in (roles or {}).items() if re.search(pat, name)), None)
        if role is None:
            if isinstance(module, nn.Embedding):
                role = "input"
            elif readout_weight is not None and p is readout_weight:
                role = "readout"
            elif p.ndim < 2:
                role = "vector"
            elif first_layer is not None and mname == first_layer:
                role = "input"
            else:
                role = "hidden"
        role_of[name] = role
        in_block[name] = bool(re.search(blocks, name)) if blocks else any(name.startswith(q) for q in list_prefixes)
    return role_of, in_block, readout_mod


def make_plan(
    model: nn.Module,
    param: str = "mup",
    *,
    width: float,
    base_width: float | None = None,
    depth: float = 1,
    base_depth: float | None = None,
    alpha: float = 1.0,
    init_std: float = 0.02,
    input_std: float | None = None,
    readout_zero_init: bool = False,
    optimizer: str = "adamw",
    roles: Mapping[str, str] | None = None,
    blocks: str | None = None,
    branch_out: str | None = None,
) -> ParamPlan:
    """Decide role, init, LR/wd/eps multipliers and forward multipliers for every parameter of ``model``.

    ``width``/``depth`` describe ``model``; ``base_width``/``base_depth`` (default: the same) the proxy where
    hyperparameters were tuned. ``init_std`` is the std of a hidden matrix at base width; ``input_std``
    (default ``init_std``) the std of input weights at every width. ``alpha`` in [0.5, 1] is CompleteP's
    depth exponent. ``roles``/``blocks``/``branch_out`` are regexes overriding inference (see `infer_roles`;
    ``branch_out`` is searched in module names).
    """
    if param not in PARAMS:
        raise ScaletuneError(f"unknown parameterisation {param!r} (known: {', '.join(PARAMS)})")
    if optimizer not in ("adamw", "sgd"):
        raise ScaletuneError(f"unknown optimizer {optimizer!r} (adamw | sgd)")
    base_width = width if base_width is None else base_width
    base_depth = depth if base_depth is None else base_depth
    for key, value in (("width", width), ("base_width", base_width), ("depth", depth), ("base_depth", base_depth), ("init_std", init_std)):
        if not value > 0:
            raise ScaletuneError(f"{key} must be positive (got {value})")
    if param == "completep" and not 0.5 <= alpha <= 1.0:
        raise ScaletuneError(f"CompleteP alpha must be in [0.5, 1] (got {alpha})")
    if param == "completep" and optimizer == "sgd":
        raise ScaletuneError("completep: the depth rules implemented are CompleteP's for Adam; use adamw")
    m = width / base_width
    l = depth / base_depth
    mu = param in ("mup", "completep")
    cp = param == "completep"
    a = alpha if cp else 0.0
    input_std = init_std if input_std is None else input_std

    role_of, in_block, readout_mod = infer_roles(model, roles, blocks)
    named = _named(model)
    modules = _canon_modules(model)
    readout_weight = modules[readout_mod].weight if readout_mod is not None else None
    multipliers: dict[str, float] = {}
    if readout_mod is not None:
        multipliers[readout_mod] = 1.0 / m if mu else 1.0
    if cp:
        # default: Linear layers named like out/proj/down/...; a user pattern may name any module with a
        # weight (e.g. HF GPT-2's Conv1D c_proj)
        outs = [
            n
            for n, mod in modules.items()
            if (isinstance(mod, nn.Linear) or branch_out is not None)
            and isinstance(getattr(mod, "weight", None), torch.Tensor)
            and re.search(branch_out or BRANCH_OUT_PATTERN, n)
            and in_block.get(f"{n}.weight", False)
        ]
        if any(in_block.values()) and not outs:
            raise ScaletuneError("completep: no residual-branch output layer found; name them with branch_out=REGEX")
        for n in outs:
            multipliers[n] = l ** (-alpha)

    plans: dict[str, ParamInfo] = {}
    for name, p in named.items():
        role, blk = role_of[name], in_block[name]
        # depth rules are CompleteP's only: SP and muP (width-only) leave in-block rates and eps alone
        depth_lr = l ** (a - 1) if (cp and blk) else 1.0
        depth_eps = l ** (-a) if (cp and blk) else 1.0
        is_tied = role == "input" and p is readout_weight
        if role == "input":
            std, lr_m, wd_m, eps_m = input_std, (m if optimizer == "sgd" and mu else 1.0), 1.0, 1.0
        elif role == "hidden":
            std = init_std / math.sqrt(m)
            lr_m = (1.0 / m if optimizer == "adamw" else 1.0) * depth_lr if mu else 1.0  # SGD: TP5 says 1
            wd_m = m if mu else 1.0
            eps_m = (1.0 / m) * depth_eps if mu else 1.0
        elif role == "readout":
            std = 0.0 if (readout_zero_init and mu) else init_std / math.sqrt(m)
            lr_m, wd_m, eps_m = (m if optimizer == "sgd" and mu else 1.0), 1.0, 1.0
        else:
            std = 0.0
            lr_m = (m if optimizer == "sgd" and mu else 1.0) * depth_lr
            wd_m, eps_m = 0.0, depth_eps
        plans[name] = ParamInfo(
            role=role, shape=tuple(p.shape), in_block=blk, init_std=std, lr_mult=lr_m, wd_mult=wd_m, eps_mult=eps_m, tied=is_tied
        )
    return ParamPlan(
        param=param,
        width=width,
        base_width=base_width,
        depth=depth,
        base_depth=base_depth,
        alpha=alpha if cp else 0.0,
        params=plans,
        multipliers=multipliers,
        optimizer=optimizer,
        readout=readout_mod,
    )


def _canon_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {canonical_name(n): m for n, m in model.named_modules()}


def parameterize(model: nn.Module, param: str = "mup", *, init: bool = True, **kwargs: Any) -> ParamPlan:
    """Plan (`make_plan`), re-initialise (unless ``init=False``, e.g. after loading weights) and attach."""
    plan = make_plan(model, param, **kwargs)
    if init:
        plan.init_(model)
    plan.attach(model)
    return plan
