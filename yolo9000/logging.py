"""Run logging: a CSV of every scalar, TensorBoard event files, and a PNG of the training curves at the end.

Only rank 0 writes (`enabled=False` elsewhere), so a DDP run produces one set of files. The CSV is in long form
(`step,name,value`) so new scalars (a loss term that appears late, a diagnostic) never change its columns.
"""
from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Mapping

CSV_NAME = "scalars.csv"
CURVES_NAME = "curves.png"


class RunLogger:
    """Write scalars to `<run_dir>/scalars.csv` and TensorBoard; `close()` draws `<run_dir>/curves.png`.

    Args:
        run_dir: the run directory (created).
        enabled: False on non-zero ranks: every method is then a no-op.
        tensorboard: also write TensorBoard events under `<run_dir>/tb`.
        append: keep an existing CSV (resume) instead of starting a new one.
        resume_step: the step of the checkpoint a resumed run starts from: rows (and TensorBoard events) logged
            after it, by the run that died before its next checkpoint, are dropped, since the resumed run logs those
            steps again. Implies `append`.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True,
                 append: bool = False, resume_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._writer = None
        self._file = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / CSV_NAME
        if resume_step is not None:
            append = True
            if path.exists():
                truncate_scalars(path, resume_step)
        fresh = not (append and path.exists())
        self._file = open(path, "w" if fresh else "a", newline="")
        self._csv = csv.writer(self._file)
        if fresh:
            self._csv.writerow(["step", "name", "value"])
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow import: only when wanted
            # purge_step hides the events of steps after the checkpoint that an earlier writer left.
            self._writer = SummaryWriter(str(self.run_dir / "tb"),
                                         purge_step=resume_step + 1 if resume_step is not None else None)

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record `scalars` (name -> value) at `step`."""
        if not self.enabled:
            return
        for name, value in scalars.items():
            self._csv.writerow([step, name, f"{float(value):.6g}"])
            if self._writer is not None:
                self._writer.add_scalar(name, float(value), step)
        self._file.flush()

    def close(self, curves: bool = True) -> Path | None:
        """Flush and close; draw the curves PNG from the CSV. Returns the PNG path (None when disabled)."""
        if not self.enabled or self._file is None:
            return None
        self._file.close()
        self._file = None
        if self._writer is not None:
            self._writer.close()
        return plot_curves(self.run_dir / CSV_NAME, self.run_dir / CURVES_NAME) if curves else None


def truncate_scalars(path: str | Path, step: int) -> int:
    """Drop the rows of `path` logged after `step` (atomically: temp file, then rename). Returns how many went."""
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return 0
    header, body = rows[0], rows[1:]
    kept = [row for row in body if len(row) == 3 and row[0].lstrip("-").isdigit() and int(row[0]) <= step]
    if len(kept) == len(body):
        return 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(kept)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(body) - len(kept)


def read_scalars(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """name -> [(step, value), ...] from a scalars CSV; a resumed run's repeated steps keep the last value."""
    series: dict[str, dict[int, float]] = defaultdict(dict)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                step, value = int(row["step"]), float(row["value"])
            except (TypeError, ValueError):
                continue  # a line cut short by a killed process: the rows around it are still good
            if row["name"]:
                series[row["name"]][step] = value
    return {name: sorted(points.items()) for name, points in series.items()}


def plot_curves(csv_path: str | Path, out: str | Path, names: list[str] | None = None) -> Path:
    """One small panel per scalar (losses first), written with matplotlib's Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_scalars(csv_path)
    names = names or sorted(series, key=lambda n: (not n.startswith("loss"), n))
    names = [n for n in names if n in series]
    cols = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        steps, values = zip(*series[name])
        ax.plot(steps, values, lw=1)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
        if name.startswith("loss") and min(values) > 0:
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
