"""The built-in proxy corpus: Shakespeare's works as bytes, a fixed train/validation split, seeded batches.

Tokens are bytes (vocabulary 256), so a token is a byte and a loss in nats/token is a loss in nats/byte;
bits per byte = nats / ln 2. The text ships inside the package (``scaletune/data/text``, see its SOURCE.md);
nothing is downloaded. Split: the first 95% of the bytes train, the last 5% validate.
"""

from __future__ import annotations

import lzma
from functools import lru_cache
from importlib import resources

import numpy as np
import torch

from scaletune.errors import ScaletuneError

VOCAB_SIZE = 256
VAL_FRACTION = 0.05


@lru_cache(maxsize=1)
def corpus_bytes() -> np.ndarray:
    """The whole corpus as a read-only uint8 array (5,057,198 bytes of ASCII)."""
    raw = resources.files("scaletune").joinpath("data/text/shakespeare.txt.xz").read_bytes()
    arr = np.frombuffer(lzma.decompress(raw), dtype=np.uint8)
    arr.setflags(write=False)
    return arr


@lru_cache(maxsize=2)
def split(name: str) -> torch.Tensor:
    """``"train"`` or ``"val"`` bytes as an int64 tensor (fixed split, see module doc)."""
    data = corpus_bytes()
    cut = int(len(data) * (1 - VAL_FRACTION))
    if name == "train":
        part = data[:cut]
    elif name == "val":
        part = data[cut:]
    else:
        raise ScaletuneError(f"unknown split {name!r} (train | val)")
    return torch.from_numpy(part.astype(np.int64))


class Batches:
    """Random training windows: each call returns (inputs, targets) of shape (sequences, seq_len).

    Window starts are drawn uniformly from the train split with a private CPU generator, so the stream of
    batches is a function of ``seed`` only (independent of model initialisation, thread count and device).
    On another ``device`` the split lives there and the windows are gathered there.
    """

    def __init__(self, sequences: int, seq_len: int, seed: int, device: torch.device | str = "cpu"):
        self.data = split("train").to(device)
        self.sequences, self.seq_len = sequences, seq_len
        self.gen = torch.Generator().manual_seed(seed)
        self.offsets = torch.arange(seq_len + 1, device=device)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(self.data) - self.seq_len - 1, (self.sequences,), generator=self.gen)
        idx = starts.to(self.data.device)[:, None] + self.offsets
        chunk = self.data[idx]
        return chunk[:, :-1], chunk[:, 1:]


def val_windows(tokens: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed validation set of about ``tokens`` target tokens: evenly spaced windows of the val split."""
    data = split("val")
    count = max(1, tokens // seq_len)
    limit = len(data) - seq_len - 1
    if count * seq_len > limit:
        raise ScaletuneError(f"eval_tokens={tokens} exceeds the validation split ({limit} tokens)")
    starts = torch.linspace(0, limit, count).long()
    chunk = data[starts[:, None] + torch.arange(seq_len + 1)]
    return chunk[:, :-1], chunk[:, 1:]
