"""Throughput of the scaletune trainer vs a plain hand-written PyTorch loop: same model, data, device.

For each width, three loops train the same `TransformerLM` (same shape, same batches, same precision rule
as `run_lm`: bf16 autocast on CUDA, on CPU from width 128) for the same number of steps:

- plain: forward, backward, AdamW step, zero_grad and nothing else (one param group, no scheduler, no
  clipping, no loss read-back, no evaluation);
- trainer: `run_lm` with everything on (muP groups and hooks, LambdaLR schedule, gradient clipping,
  per-step loss read-back and divergence check), stability signals off;
- +signals: the same with stability signals every ``--signals-every`` steps (explicit attention logits
  on two sequences, output-logit statistics, gradient norm, update ratios: a parameter copy per signal step).

Per-step throughput is measured by difference: each loop runs ``--steps`` and 2 x ``--steps`` steps and
tokens/s = extra tokens / extra time, so model build, corpus upload, the one final evaluation, CUDA
start-up and torch.compile's compilation cancel out. Clock: on CPU the process's CPU time (robust to other
processes on a shared machine; valid because every loop runs ``--threads`` threads), on CUDA wall time
(the trainer ends each step with a loss read-back; the plain loop synchronises before its clock stops).
Runs alternate and medians of ``--repeats`` are reported.

MFU (model FLOPs utilisation) = tokens/s x `flops_per_token` / peak, with flops_per_token = 6 x matmul
weights + 12 x depth x seq_len x width (PaLM's convention: attention counted, not halved for causality,
no rematerialisation). Peak: ``--peak-tflops``, else dense bf16 tensor-core peak by GPU name (PEAK_TFLOPS);
none on CPU unless given.

    nice -n 10 .venv/bin/python benchmarks/throughput.py --device cpu --widths 64,128 --steps 20
    .venv/bin/python benchmarks/throughput.py --device cuda   # widths 256-2048, depth 8, seq_len 1024
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scaletune.train import run_lm
from scaletune.train.data import Batches
from scaletune.train.device import resolve_device
from scaletune.train.model import TransformerLM, flops_per_token
from scaletune.train.trainer import RunConfig

# dense bf16 tensor-core peak (TFLOP/s, no sparsity) by a substring of torch.cuda.get_device_name; first match wins
PEAK_TFLOPS = [
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("4090", 165.0),
]
DEFAULTS = {  # per device type: widths, head dim, seq_len, tokens per step (depth: see --depth)
    "cpu": ("64,128,256", 32, 128, 2048),
    "cuda": ("256,512,1024,2048", 64, 1024, 32768),
}


def plain_loop(cfg: RunConfig, device: torch.device) -> None:
    """The minimal loop on the same model shape, data, device and precision."""
    torch.manual_seed(cfg.seed)
    model = TransformerLM(cfg.lm_config()).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=True)
    step_model = torch.compile(model) if cfg.compile else model
    batches = Batches(cfg.batch_size // cfg.seq_len, cfg.seq_len, cfg.seed, device=device)
    autocast = cfg.autocast(device.type)
    for _ in range(cfg.steps):
        x, y = batches()
        with torch.autocast(**autocast):
            _, loss = step_model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()


def clocked(device: torch.device, fn, *args) -> float:
    """Seconds of one call: CPU time of this process on CPU, wall time elsewhere."""
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    start = clock()
    fn(*args)
    return clock() - start


def peak_tflops(device: torch.device, given: float | None) -> tuple[float | None, str]:
    if given:
        return given, "given"
    if device.type != "cuda":
        return None, "none"
    name = torch.cuda.get_device_name(device)
    return next(((p, name) for key, p in PEAK_TFLOPS if key in name), (None, name))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    ap.add_argument("--widths", help="comma-separated (default: cpu 64,128,256; cuda 256,512,1024,2048)")
    ap.add_argument("--depth", type=int, help="default: cpu 2 at width 64 else 4; cuda 8")
    ap.add_argument("--head-dim", type=int, help="default: cpu 32, cuda 64")
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--batch-size", type=int, help="tokens per step (default: cpu 2048, cuda 32768)")
    ap.add_argument("--steps", type=int, default=20, help="the short run; the long one is twice this")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--signals-every", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="torch.compile both the trainer and the plain loop")
    ap.add_argument("--peak-tflops", type=float, help="peak of the device for MFU (default: by GPU name)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    kind = "cuda" if device.type == "cuda" else "cpu"
    widths, head_dim, seq_len, batch = DEFAULTS[kind]
    widths = [int(w) for w in (args.widths or widths).split(",")]
    head_dim, seq_len, batch = args.head_dim or head_dim, args.seq_len or seq_len, args.batch_size or batch
    torch.set_num_threads(args.threads)
    peak, source = peak_tflops(device, args.peak_tflops)
    print(
        f"torch {torch.__version__}, device {device} ({source}), threads {args.threads}, batch {batch} tokens, "
        f"seq_len {seq_len}, head_dim {head_dim}, {args.steps} vs {2 * args.steps} steps, median of {args.repeats}"
        f"{', compiled' if args.compile else ''}; peak {peak or 'n/a'} TFLOP/s; "
        f"clock: {'CPU time' if device.type == 'cpu' else 'wall'}"
    )
    print(
        f"{'width':>5} {'depth':>5} {'N':>11} {'prec':>4} | {'tok/s plain':>11} {'trainer':>9} {'+signals':>9} | "
        f"{'trainer/plain':>13} {'signals/trainer':>15} | {'TFLOP/s':>7} {'MFU plain':>9} {'trainer':>7}"
    )

    def mfu(tokens_per_s: float, fpt: float) -> str:
        return f"{100 * tokens_per_s * fpt / (peak * 1e12):.1f}%" if peak else "n/a"

    for width in widths:
        d = args.depth or (8 if kind == "cuda" else 2 if width <= 64 else 4)
        config = {
            "width": width,
            "depth": d,
            "heads": max(1, width // head_dim),
            "lr": 1e-3,
            "batch_size": batch,
            "seq_len": seq_len,
            "threads": args.threads,
            "eval_every": 10**9,
            "eval_tokens": seq_len,
            "param": "mup",
            "base_width": 64,
            "device": str(device),
            "compile": args.compile,
            "signals_every": 0,
        }
        variants = {
            "plain": lambda c: plain_loop(RunConfig.from_dict(c), device),
            "trainer": run_lm,
            "signals": lambda c: run_lm({**c, "signals_every": args.signals_every}),
        }
        short, long = ({**config, "tokens": n * batch} for n in (args.steps, 2 * args.steps))
        for fn in variants.values():  # warm-up: corpus decompression, allocator, kernels, compile caches
            fn({**config, "tokens": 2 * batch})
        rates: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.repeats):
            for key, fn in variants.items():
                extra = clocked(device, fn, long) - clocked(device, fn, short)
                rates[key].append(args.steps * batch / extra if extra > 0 else float("nan"))
        plain, ours, sig = (statistics.median(rates[k]) for k in variants)
        cfg = RunConfig.from_dict(short)
        fpt = flops_per_token(cfg.lm_config())
        n_params = sum(p.numel() for p in TransformerLM(cfg.lm_config()).parameters())
        prec = "bf16" if cfg.autocast(device.type)["enabled"] else "fp32"
        print(
            f"{width:>5} {d:>5} {n_params:>11,} {prec:>4} | {plain:>11,.0f} {ours:>9,.0f} {sig:>9,.0f} | "
            f"{ours / plain:>13.3f} {sig / ours:>15.3f} | {ours * fpt / 1e12:>7.3f} {mfu(plain, fpt):>9} {mfu(ours, fpt):>7}"
        )


if __name__ == "__main__":
    main()
