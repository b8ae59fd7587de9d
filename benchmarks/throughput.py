"""Throughput of the scaletune trainer vs a plain hand-written PyTorch loop: same model, data, threads.

For each shape, both loops train the same `TransformerLM` (same shape, same batches, same precision rule:
bf16 autocast from width 128) for the same number of steps; the plain loop is forward, backward,
AdamW step, zero_grad and nothing else (one param group, no scheduler, no clipping, no loss read-back,
no evaluation). The trainer runs with everything on (muP groups and hooks, LambdaLR schedule, gradient
clipping, per-step loss read-back and divergence check) and one final evaluation of a single window.

Two clocks: CPU time of the process around each whole call (model build included in both; robust to
other processes on a shared machine, valid because both run one thread), and wall time (the trainer's own
``tokens_per_s``, which excludes evaluation, vs the plain loop's wall time). Runs alternate (trainer,
plain, trainer, ...) and medians of the repeats are reported.

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
    """Wall tokens/s of the minimal loop on the same model shape, data and precision."""
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


def cpu_timed(fn, *args):
    """(result, CPU seconds of this process) of one call."""
    start = time.process_time()
    out = fn(*args)
    return out, time.process_time() - start


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
    print(f"{'width':>5} {'depth':>5} {'prec':>5} | {'tok/CPU-s trainer':>17} {'plain':>8} {'ratio':>6} | "
          f"{'wall tok/s trainer':>18} {'plain':>8} {'ratio':>6} | {'GFLOP/CPU-s trainer':>19} {'plain':>6}")
    for width, depth in SHAPES:
        config = {"width": width, "depth": depth, "lr": 1e-3, "tokens": args.steps * args.batch_size,
                  "batch_size": args.batch_size, "seq_len": args.seq_len, "threads": args.threads,
                  "eval_every": args.steps, "eval_tokens": args.seq_len, "param": "mup", "base_width": 64}
        cfg = RunConfig.from_dict(config)
        fpt = flops_per_token(cfg.lm_config())
        tokens = cfg.steps * cfg.batch_size
        run_lm({**config, "tokens": 2 * args.batch_size})  # warm-up: corpus decompression, allocator, kernels
        plain_loop(RunConfig.from_dict({**config, "tokens": 2 * args.batch_size}))
        cpu_ours, cpu_plain, wall_ours, wall_plain = [], [], [], []
        for _ in range(args.repeats):
            row, cpu = cpu_timed(run_lm, config)
            wall_ours.append(row["tokens_per_s"])
            cpu_ours.append(tokens / cpu)
            wall, cpu = cpu_timed(plain_loop, cfg)
            wall_plain.append(wall)
            cpu_plain.append(tokens / cpu)
        a, b = statistics.median(cpu_ours), statistics.median(cpu_plain)
        c, d = statistics.median(wall_ours), statistics.median(wall_plain)
        print(f"{width:>5} {depth:>5} {'bf16' if cfg.bf16 else 'fp32':>5} | {a:>17,.0f} {b:>8,.0f} {a / b:>6.3f} | "
              f"{c:>18,.0f} {d:>8,.0f} {c / d:>6.3f} | {a * fpt / 1e9:>19.1f} {b * fpt / 1e9:>6.1f}")


if __name__ == "__main__":
    main()
