"""A small decoder-only transformer LM: pre-norm RMSNorm, optional QK-norm and z-loss, tied or untied
embeddings, GELU or SwiGLU MLP, learned absolute positions.

Counting conventions (used in the run table):

    N           all trainable parameters (token + position embeddings, blocks, final norm, readout unless tied)
    N_nonembed  N minus the token embedding, the position embedding and an untied readout matrix
                (Kaplan et al. 2020); norms stay in.
    flops_per_token(attention=True)
                training FLOPs per token = 3 x forward (backward = 2 x forward), forward = 2 x every
                weight-matrix multiply-accumulate (QKV, attention out, MLP, readout; not embedding lookups)
                + attention scores and weighted sum: 2 x 2 x depth x seq_len x width (full, not causal-halved,
                as Kaplan et al.). attention=False drops that last term.
    C (run table)  6 * N * D, the run table's default convention; `flops_per_token` gives the exact count.

The muP/CompleteP multipliers (readout 1/m, residual-branch l^-alpha) are not in this file: they are
forward hooks attached by `scaletune.train.param`, the same mechanism used for any user model. Only the
attention scale, which sits inside the softmax, is a model option (``attn_scale``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scaletune.errors import ScaletuneError

# (width, depth, heads) presets: tiny proxies for CPU sweeps up to GPT-2-small shape.
PRESETS: dict[str, tuple[int, int, int]] = {
    "nano": (32, 2, 1),
    "micro": (64, 2, 2),
    "tiny": (128, 4, 4),
    "mini": (256, 4, 8),
    "small": (384, 6, 6),
    "base": (768, 12, 12),
}


@dataclass(frozen=True)
class LMConfig:
    """Shape and options of `TransformerLM`; ``heads`` defaults to width // 32 (head dim 32)."""

    width: int
    depth: int
    heads: int | None = None
    seq_len: int = 128
    vocab_size: int = 256
    mlp: str = "gelu"  # gelu | swiglu
    mlp_ratio: float = 4.0  # hidden size / width (swiglu: 2/3 of it per gate, rounded, as LLaMA)
    tied: bool = False
    qk_norm: bool = False
    z_loss: float = 0.0  # coefficient of mean(logsumexp^2) added to the training loss
    attn_scale: float | None = None  # None: 1/sqrt(head_dim) (SP); muP passes sqrt(base_head_dim)/head_dim

    def __post_init__(self) -> None:
        for key in ("width", "depth", "seq_len", "vocab_size"):
            if int(getattr(self, key)) <= 0:
                raise ScaletuneError(f"model {key} must be a positive integer (got {getattr(self, key)})")
        if self.width % self.n_heads:
            raise ScaletuneError(f"width {self.width} is not divisible by heads {self.n_heads}")
        if self.mlp not in ("gelu", "swiglu"):
            raise ScaletuneError(f"mlp must be gelu or swiglu (got {self.mlp!r})")

    @property
    def n_heads(self) -> int:
        return self.heads if self.heads else max(1, self.width // 32)

    @property
    def head_dim(self) -> int:
        return self.width // self.n_heads

    @property
    def hidden(self) -> int:
        h = self.mlp_ratio * self.width
        return int(round(2 * h / 3)) if self.mlp == "swiglu" else int(round(h))

    @classmethod
    def preset(cls, name: str, **kwargs) -> "LMConfig":
        if name not in PRESETS:
            raise ScaletuneError(f"unknown model preset {name!r} (known: {', '.join(PRESETS)})")
        w, d, h = PRESETS[name]
        return cls(width=w, depth=d, heads=h, **kwargs)


# Under bf16 autocast RMSNorm's input is bf16 and its gain fp32: torch then takes its unfused path and warns on
# every call. That warning alone is silenced (once, here, not in the hot path); the numerics stay as they
# were, so runs remain comparable with earlier ones.
warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight", category=UserWarning)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width, bias=False)
        self.out = nn.Linear(cfg.width, cfg.width, bias=False)
        self.q_norm = RMSNorm(self.head_dim) if cfg.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim) if cfg.qk_norm else None
        self.scale = cfg.attn_scale if cfg.attn_scale is not None else 1.0 / math.sqrt(self.head_dim)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        # SDPA (fused kernels on GPU); scale= carries muP's 1/head_dim where the default would be 1/sqrt
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.out(y.transpose(1, 2).reshape(B, T, C))

    @torch.no_grad()
    def logit_max(self, x: torch.Tensor) -> torch.Tensor:
        """Largest pre-softmax attention logit, scale included, over the causal positions of input ``x``
        (B, T, width). SDPA never materialises the logits, so this recomputes q k^T explicitly: call it on
        a few sequences, not in the training step."""
        q, k, _ = self._qkv(x)
        with torch.autocast(x.device.type, enabled=False):  # q, k as the training step made them; product in fp32
            logits = (q.float() @ k.float().transpose(-2, -1)) * self.scale
        T = x.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        return logits.masked_fill(~causal, float("-inf")).amax()


class MLP(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.swiglu = cfg.mlp == "swiglu"
        self.up = nn.Linear(cfg.width, (2 if self.swiglu else 1) * cfg.hidden, bias=False)
        self.down = nn.Linear(cfg.hidden, cfg.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        if self.swiglu:
            gate, h = h.chunk(2, dim=-1)
            h = F.silu(gate) * h
        else:
            h = F.gelu(h, approximate="tanh")
        return self.down(h)


class Block(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.norm1, self.attn = RMSNorm(cfg.width), Attention(cfg)
        self.norm2, self.mlp = RMSNorm(cfg.width), MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerLM(nn.Module):
    """Decoder-only LM; ``forward(idx, targets)`` returns (logits, loss) with loss in nats/token."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos_emb = nn.Embedding(cfg.seq_len, cfg.width)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = RMSNorm(cfg.width)
        self.lm_head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        if cfg.tied:
            self.lm_head.weight = self.tok_emb.weight

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        T = idx.shape[1]
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.norm(x)).float()
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))
        if self.cfg.z_loss > 0 and self.training:
            loss = loss + self.cfg.z_loss * torch.logsumexp(logits, dim=-1).pow(2).mean()
        return logits, loss


def count_params(cfg: LMConfig) -> dict[str, int]:
    """Parameter counts of `TransformerLM(cfg)` without building it: ``N`` and ``N_nonembed`` (see module doc)."""
    w, L, V, T, H = cfg.width, cfg.depth, cfg.vocab_size, cfg.seq_len, cfg.hidden
    up = (2 if cfg.mlp == "swiglu" else 1) * H * w
    block = 4 * w * w + up + H * w + 2 * w + (2 * cfg.head_dim if cfg.qk_norm else 0)
    embed = V * w + T * w + (0 if cfg.tied else V * w)
    nonembed = L * block + w
    return {"N": nonembed + embed, "N_nonembed": nonembed}


def flops_per_token(cfg: LMConfig, attention: bool = True) -> float:
    """Training FLOPs per token (forward + backward = 3 x forward; see the module doc for what counts)."""
    w, L, V, H = cfg.width, cfg.depth, cfg.vocab_size, cfg.hidden
    up = (2 if cfg.mlp == "swiglu" else 1) * H * w
    matmul = L * (4 * w * w + up + H * w) + V * w
    forward = 2 * matmul + (2 * 2 * L * cfg.seq_len * w if attention else 0)
    return 3.0 * forward
