"""Logs of the kind a training script already writes: a small learning-rate sweep of the built-in LM at two
widths, logged to TensorBoard with PyTorch's SummaryWriter (losses and the rate per step, hyperparameters
with add_hparams; the batch size in sequences, as most scripts log it). `scaletune import tensorboard`
turns the folder into a run table; see README "Runs you already have".

    python examples/tensorboard_logs.py tb_runs     # 10 runs, about a minute on one core
"""

import sys

from torch.utils.tensorboard import SummaryWriter

from scaletune.train import run_lm

SEQ_LEN, BATCH_SEQUENCES, TOKENS = 64, 16, 40_960


def main(out: str) -> None:
    for width in (32, 64):
        for lr in (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2):
            config = {
                "width": width,
                "depth": 1,
                "tokens": TOKENS,
                "lr": lr,
                "seq_len": SEQ_LEN,
                "batch_size": BATCH_SEQUENCES * SEQ_LEN,
                "eval_every": 10,
            }
            row = run_lm(config)
            writer = SummaryWriter(f"{out}/w{width}_lr{lr:g}")
            for point in row["curve"]:
                writer.add_scalar("train/loss", point["train_loss"], point["step"])
                writer.add_scalar("lr", point["lr"], point["step"])
                if point["val_loss"] is not None:
                    writer.add_scalar("val/loss", point["val_loss"], point["step"])
            hparams = {
                "width": width,
                "lr": lr,
                "batch_size": BATCH_SEQUENCES,
                "seq_len": SEQ_LEN,
                "max_steps": TOKENS // (BATCH_SEQUENCES * SEQ_LEN),
                "n_params": row["N"],
            }
            writer.add_hparams(hparams, {"hparam/val_loss": row["loss"]})
            writer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tb_runs")
