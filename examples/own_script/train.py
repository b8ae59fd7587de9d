"""A training script that knows nothing about scaletune's trainer: a byte-level MLP language model in plain
PyTorch. scaletune sweeps it as a command (see own_script.toml); the only scaletune line is `reporting`.

    python train.py --lr 3e-3 --batch_size 256 --width 64 --tokens 100000 --seed 0

The model predicts the next byte from the previous CONTEXT bytes: embeddings (256 x EMBED) of the context,
concatenated, then two hidden layers of WIDTH units. Losses are cross-entropy in nats per byte (natural log).
Runs in a few seconds on a CPU at these sizes; uses CUDA when available (--device auto).
"""

from __future__ import annotations

import argparse
import lzma
import math
import time
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from scaletune import reporting  # no-op when the script runs outside a sweep

CONTEXT, EMBED = 16, 16


def load_bytes(path: str | None) -> torch.Tensor:
    """Your text file (plain or .xz), or by default the Shakespeare text that ships with scaletune."""
    if path:
        raw = Path(path).read_bytes()
        raw = lzma.decompress(raw) if path.endswith(".xz") else raw
    else:
        raw = lzma.decompress(resources.files("scaletune").joinpath("data/text/shakespeare.txt.xz").read_bytes())
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()


class ByteMLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, EMBED)
        self.body = nn.Sequential(nn.Linear(CONTEXT * EMBED, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, 256))

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return self.body(self.embed(context).flatten(1))


def windows(data: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(context bytes, next byte) at each start position."""
    idx = starts[:, None] + torch.arange(CONTEXT + 1)
    chunk = data[idx]
    return chunk[:, :-1], chunk[:, -1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lr", type=float, required=True, help="peak learning rate (AdamW)")
    parser.add_argument("--batch_size", type=int, default=256, help="tokens (predicted bytes) per step")
    parser.add_argument("--width", type=int, default=64, help="hidden units")
    parser.add_argument("--tokens", type=int, default=100_000, help="training tokens D")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    parser.add_argument("--data", default=None, help="a text file (default: the Shakespeare text of scaletune)")
    args = parser.parse_args()

    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu" if args.device == "auto" else args.device
    )
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    data = load_bytes(args.data)
    cut = int(0.95 * len(data))  # the first 95% train, the last 5% validate
    train, val = data[:cut], data[cut:]
    gen = torch.Generator().manual_seed(1234)  # the same validation windows for every run
    val_x, val_y = (t.to(device) for t in windows(val, torch.randint(0, len(val) - CONTEXT - 1, (8192,), generator=gen)))

    model = ByteMLP(args.width).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    n_embed = model.embed.weight.numel()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    steps = max(1, args.tokens // args.batch_size)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine down to 10%
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.1 + 0.45 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))
    )
    batch_gen = torch.Generator().manual_seed(args.seed)

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            loss = nn.functional.cross_entropy(model(val_x), val_y).item()
        model.train()
        return loss

    start = time.perf_counter()
    eval_every = max(1, steps // 8)
    val_loss = math.nan
    for step in range(1, steps + 1):
        x, y = windows(train, torch.randint(0, len(train) - CONTEXT - 1, (args.batch_size,), generator=batch_gen))
        loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr = sched.get_last_lr()[0]
        sched.step()
        if step % eval_every == 0 or step == steps:
            val_loss = evaluate()
            reporting.report(step, val_loss, tokens=step * args.batch_size, lr=lr, train_loss=loss.item())
            print(f"step {step}/{steps}  train {loss.item():.4f}  val {val_loss:.4f}", flush=True)
            if not math.isfinite(val_loss):
                break  # the sweep records a NaN / inf loss as diverged
    reporting.report_final(val_loss, N=n_params, N_nonembed=n_params - n_embed, D=steps * args.batch_size)
    print(f"done: val loss {val_loss:.4f} nats/byte, N={n_params:,}, {time.perf_counter() - start:.1f} s on {device}")


if __name__ == "__main__":
    main()
