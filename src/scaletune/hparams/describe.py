"""English for a recommendation's predictions, rendered from their fields (``method`` and ``details``).

The decision is the `Method` and the numbers in ``details``; this module only says it in words, for the
command line, the figures and the HTML report:

    >>> from scaletune.hparams.describe import describe
    >>> from scaletune.hparams.laws import Method
    >>> from scaletune.results import Prediction
    >>> describe(Prediction(0.002, 0.001, 0.004, method=Method.LR_C, details={"selection": "held_out", "batch_size": 1024}))
    'lr*(C) at batch 1024 tokens, chosen by held-out loss'
"""

from __future__ import annotations

import enum
from typing import Any, Mapping

from scaletune.hparams.laws import Method
from scaletune.results import Prediction, format_scale


def _scale(details: Mapping[str, Any]) -> str:
    return format_scale(dict(details.get("scale") or {}))


def _loss(method: Method, d: Mapping[str, Any]) -> str:
    law = "chinchilla" if method in (Method.LOSS_CHINCHILLA, Method.LOSS_CHINCHILLA_JOINT) else "compute"
    if method in (Method.LOSS_CHINCHILLA_JOINT, Method.LOSS_COMPUTE_JOINT):
        return f"{law} law on the joint landscape's optimum losses + its penalty at the recommended settings"
    text = f"{law} law fitted on the optimal loss per scale"
    if d.get("batch_shift_nats") is not None:
        return text + ", moved to the recommended batch size"
    if d.get("fitted_at_batch") is not None:
        return text + (
            f" (at batch {d['fitted_at_batch']:g} tokens, the one it was fitted at; no batch sweep spans "
            f"{d['batch_size']:.4g} tokens to correct it)"
        )
    return text


def describe(p: Prediction) -> str:
    """Which law or rule produced ``p``, in words (one line)."""
    m, d = p.method, p.details
    if not isinstance(m, Method):
        text = m.value if isinstance(m, enum.Enum) else str(m)
        return f"{text}, least squares over {d['scales']} scales" if "scales" in d else text
    if d.get("selection") == "held_out":
        at = f" at batch {d['batch_size']:.4g} tokens" if "batch_size" in d else ""
        return f"{m.value}{at}, chosen by held-out loss"
    if "law" in d:
        return f"fitted {d['law']}: {d.get('formula', m.value)}"
    if m in (Method.LOSS_CHINCHILLA, Method.LOSS_COMPUTE, Method.LOSS_CHINCHILLA_JOINT, Method.LOSS_COMPUTE_JOINT):
        return _loss(m, d)
    text = {
        Method.LR_NDB: "lr*(N, D, B) at the recommended batch size {batch_size:.4g} tokens, fitted on the (scale, batch size) slices",
        Method.LR_PROXY_COPIED: "copied from the largest proxy ({scale}); transfer assumed, no law",
        Method.BATCH_NEAREST_SWEEP: "the batch-size optimum at {scale}, the swept scale nearest the target, copied",
        Method.BATCH_NEAREST_BOUND: "best tested batch size at {scale}, the swept scale nearest the target; {why}, not a fitted optimum",
        Method.BATCH_AS_PROXIES: "as in the proxies (batch size not swept)",
        Method.BATCH_REFERENCE: "the batch size the lr law was fitted at",
        Method.BATCH_MODE: "the proxies' most common batch size",
        Method.SEQUENCES: "batch_size / seq_len ({seq_len} tokens per sequence)",
    }.get(m)
    if text is None:
        return str(m.value)
    why = "at the edge of the sweep: a bound" if d.get("at_edge") else "no convex optimum there (flat or noisy)"
    return text.format(**{**d, "scale": _scale(d), "why": why})
