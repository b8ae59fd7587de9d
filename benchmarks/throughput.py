"""Throughput of the scaletune trainer vs a plain hand-written PyTorch loop: same model, data, threads.

For each shape, both loops train the same `TransformerLM` (same init, same batches, same precision rule:
bf16 autocast from width 128) for the same number of steps; the plain loop is forward, backward,
AdamW step, zero_grad and nothing else (one param group, no scheduler, no clipping, no loss read-back).
The trainer's time excludes evaluation (its ``tokens_per_s``). Runs alternate (trainer, plain, trainer,
...) and the median of the repeats is reported, because the machine is shared.

Achieved FLOP/s uses `flops_per_token` (training = 3 x forward matmul FLOPs, attention included).

    nice -n 10 .venv/bin/python benchmarks/throughput.py [--threads 1] [--repeats 3] [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scaletune.train import run_lm
from scaletune.train.data import Batches
from scaletune.train.model import TransformerLM, flops_per_token
from scaletune.train.trainer import RunConfig

SHAPES = [(64, 2), (128, 4), (256, 4)]


def plain_loop(cfg: RunConfig) -> float:
    """Tokens/s of the minimal loop on the same model, data and precision."""
    torch.manual_seed(cfg.seed)
    model = TransformerLM(cfg.lm_config())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=True)
    batches = Batches(cfg.batch_size // cfg.seq_len, cfg.seq_len, cfg.seed)
    start = time.perf_counter()
    for _ in range(cfg.steps):
        x, y = batches()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return cfg.steps * cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=2048, help="tokens per step")
    ap.add_argument("--seq-len", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads}, batch {args.batch_size} tokens, seq_len {args.seq_len}, "
          f"{args.steps} steps, median of {args.repeats}")
    print(f"{'width':>5} {'depth':>5} {'prec':>5} {'trainer tok/s':>14} {'plain tok/s':>12} {'ratio':>6} "
          f"{'trainer GFLOP/s':>16} {'plain GFLOP/s':>14}")
    for width, depth in SHAPES:
        config = {"width": width, "depth": depth, "lr": 1e-3, "tokens": args.steps * args.batch_size,
                  "batch_size": args.batch_size, "seq_len": args.seq_len, "threads": args.threads,
                  "eval_every": args.steps, "eval_tokens": args.seq_len * 8, "param": "mup", "base_width": 64}
        cfg = RunConfig.from_dict(config)
        fpt = flops_per_token(cfg.lm_config())
        ours, plain = [], []
        for _ in range(args.repeats):
            ours.append(run_lm(config)["tokens_per_s"])
            plain.append(plain_loop(cfg))
        a, b = statistics.median(ours), statistics.median(plain)
        print(f"{width:>5} {depth:>5} {'bf16' if cfg.bf16 else 'fp32':>5} {a:>14,.0f} {b:>12,.0f} {a / b:>6.3f} "
              f"{a * fpt / 1e9:>16.2f} {b * fpt / 1e9:>14.2f}")


if __name__ == "__main__":
    main()
