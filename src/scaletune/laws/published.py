"""Published scaling laws, usable without data, each with its citation, units and counting convention.

Plain functions (for side-by-side comparisons) and, for the CLI and `predict`/`allocate`, the same laws as
`FitResult` values named ``published:NAME``. Published laws carry no bootstrap samples: their intervals are
the papers' (not reproducible here), so `predict_interval` on them gives method ``point`` with NaN bounds
and the CLI says so.

Units: N parameters, D tokens, C FLOPs, batch sizes in tokens, learning rates for AdamW (peak value).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike

from scaletune.errors import ScaletuneError
from scaletune.laws.catalogue import get_law
from scaletune.laws.fitting import FitResult

FloatArray = npt.NDArray[np.float64]

# --------------------------------------------------------------------------- plain functions


def steplaw_lr(N: ArrayLike, D: ArrayLike) -> FloatArray:
    """StepLaw optimal peak learning rate (Li et al. 2025, "Predictable Scale: Part I", eq. 1).

    lr* = 1.79 N^-0.713 D^0.307, N non-embedding parameters, D training tokens (AdamW, WSD-like schedule).
    """
    return 1.79 * np.asarray(N, float) ** -0.713 * np.asarray(D, float) ** 0.307


def steplaw_batch(D: ArrayLike) -> FloatArray:
    """StepLaw optimal batch size in tokens (Li et al. 2025): B* = 0.58 D^0.571, D training tokens."""
    return 0.58 * np.asarray(D, float) ** 0.571


def deepseek_lr(C: ArrayLike) -> FloatArray:
    """DeepSeek LLM optimal peak learning rate vs compute (DeepSeek-AI 2024, arXiv 2401.02954, eq. 1).

    lr* = 0.3118 C^-0.1250 with C = M D in FLOPs, where M is the non-embedding FLOPs per token
    (M = 72 n_layer d_model^2 + 6 n_layer d_model l_seq, attention included, vocabulary excluded),
    not 6N. For a rough conversion from parameters use C ~ 6 N_nonembed D.
    """
    return 0.3118 * np.asarray(C, float) ** -0.1250


def deepseek_batch(C: ArrayLike) -> FloatArray:
    """DeepSeek LLM optimal batch size in tokens vs compute: B* = 0.2920 C^0.3271 (C = M D FLOPs, see deepseek_lr)."""
    return 0.2920 * np.asarray(C, float) ** 0.3271


def deepseek_allocation(C: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """DeepSeek LLM compute-optimal allocation: (M*, D*) = (0.1715 C^0.5243, 5.8316 C^0.4757).

    M* is non-embedding FLOPs per token (not parameters), D* tokens, C = M D FLOPs.
    """
    c = np.asarray(C, float)
    return 0.1715 * c**0.5243, 5.8316 * c**0.4757


# --------------------------------------------------------------------------- the catalogue of published laws


@dataclass(frozen=True)
class Published:
    law: str
    y: str
    params: dict[str, float]
    citation: str
    convention: str


HOFFMANN = Published(
    "chinchilla",
    "loss",
    {"a": float(np.log(406.4)), "b": float(np.log(410.7)), "e": float(np.log(1.69)), "alpha": 0.3392, "beta": 0.2849},
    "Hoffmann et al. 2022, Training Compute-Optimal LLMs, Approach 3: E=1.69, A=406.4, B=410.7, alpha=0.3392, "
    "beta=0.2849 (the unrounded exponents of the TeX source, as reported by Besiroglu et al. 2024; the body's "
    "0.34/0.28 give a visibly different allocation)",
    "N total parameters, D tokens, loss in nats/token (MassiveText), C = 6ND",
)

PUBLISHED: dict[str, Published] = {
    "hoffmann": HOFFMANN,
    "chinchilla": HOFFMANN,
    "muennighoff": Published(
        "data_constrained",
        "loss",
        {"a": 6.255414, "b": 7.3049974, "e": 0.6254804, "alpha": 0.3526596, "beta": 0.3526596, "R_D": 15.387756, "R_N": 5.309743},
        "Muennighoff et al. 2023, Scaling Data-Constrained Language Models (github.com/huggingface/datablations README)",
        "N parameters, D total tokens (repeats included), U unique tokens, loss in nats/token (C4 validation)",
    ),
    "steplaw-lr": Published(
        "powerlaw:N,D",
        "lr",
        {"log_k": float(np.log(1.79)), "c_N": -0.713, "c_D": 0.307},
        "Li et al. 2025, Predictable Scale: Part I (StepLaw), lr* = 1.79 N^-0.713 D^0.307",
        "N non-embedding parameters, D tokens, peak AdamW learning rate",
    ),
    "steplaw-batch": Published(
        "powerlaw:D",
        "batch_size",
        {"log_k": float(np.log(0.58)), "c_D": 0.571},
        "Li et al. 2025, Predictable Scale: Part I (StepLaw), B* = 0.58 D^0.571",
        "D tokens, batch size in tokens",
    ),
    "deepseek-lr": Published(
        "powerlaw:C",
        "lr",
        {"log_k": float(np.log(0.3118)), "c_C": -0.1250},
        "DeepSeek-AI 2024, DeepSeek LLM (arXiv 2401.02954), lr* = 0.3118 C^-0.1250",
        "C = M D FLOPs with M non-embedding FLOPs/token (attention included), peak learning rate",
    ),
    "deepseek-batch": Published(
        "powerlaw:C",
        "batch_size",
        {"log_k": float(np.log(0.2920)), "c_C": 0.3271},
        "DeepSeek-AI 2024, DeepSeek LLM (arXiv 2401.02954), B* = 0.2920 C^0.3271",
        "C = M D FLOPs with M non-embedding FLOPs/token, batch size in tokens",
    ),
}
# "published:deepseek" in `allocate` means deepseek_allocation (a power-law allocation, no loss law)
ALLOCATION_ONLY = {
    "deepseek": (
        deepseek_allocation,
        "DeepSeek-AI 2024, DeepSeek LLM (arXiv 2401.02954): M* = 0.1715 C^0.5243 (non-embedding FLOPs/token), D* = 5.8316 C^0.4757 tokens",
    )
}


def published(name: str) -> FitResult:
    """A published law as a `FitResult` (no bootstrap samples); ``name`` without the ``published:`` prefix."""
    key = name.removeprefix("published:").strip().lower()
    if key not in PUBLISHED:
        raise ScaletuneError(f"unknown published law {name!r} (known: {', '.join(sorted({*PUBLISHED, *ALLOCATION_ONLY}))})")
    pub = PUBLISHED[key]
    law = get_law(pub.law)
    return FitResult(
        law=law.spec,
        y=pub.y,
        objective="published",
        params_=dict(pub.params),
        derived_={k: float(v) for k, v in law.derive(pub.params).items()},
        intervals={},
        diagnostics={
            "published": True,
            "convention": pub.convention,
            "warnings": ["published law: no bootstrap samples, so no intervals from this tool"],
        },
        data_range={},
        citation=pub.citation,
        provenance={"source": f"published:{key}"},
    )


def load_fit(spec: str | Path) -> FitResult:
    """``published:NAME`` or the path of a JSON file written by `scaletune fit --out` / `FitResult.to_json`."""
    text = str(spec)
    if text.startswith("published:"):
        return published(text)
    path = Path(text)
    if not path.exists():
        raise ScaletuneError(f"{path}: no such fit file (or use published:NAME)")
    try:
        return FitResult.from_json(path.read_text())
    except ScaletuneError as exc:
        raise ScaletuneError(f"{path}: {exc}") from None
