"""scaletune.report: figures (matplotlib). Plots never compute a fit; they draw what the library returns."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Lay out, write (PNG/PDF/SVG by suffix, creating the folder) and close a figure; return its path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
