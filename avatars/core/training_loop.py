"""The loop both trainers (avatars, stylizers) run, and what it keeps and writes about itself.

* ``TrainingLog``: where a run is (step, training seconds), the loss terms of the last
  ``window`` steps (their mean is a run's "final losses") and a history with, every ``every``
  steps, the mean of the terms since the previous entry; the history is stored in
  checkpoints and plotted. Resuming starts it from a checkpoint's step, seconds and history.
* ``train_steps``: optimizer steps until the step count or the time limit is reached, with a
  progress bar (steps, or training seconds against a time limit; the loss terms' window mean),
  calling back to write samples and checkpoints every so many steps.
  ``seconds`` counts only the steps themselves (batch, forward, backward, update).
* ``run_progress`` / ``cosine``: how far a run is towards whichever limit ends it, and the
  learning rate of a cosine decay at that point.
* ``save_loss_curve``: the history as a PNG (log scale, one line per term).
* ``image_grid`` / ``save_png`` / ``save_grid``: rows of image batches as one uint8 picture
  (sample grids, texture atlases, evaluation grids), with an optional black border drawn as
  torchvision's ``make_grid`` draws it.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np
import torch
from tqdm import tqdm


def mean_losses(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each term over ``rows`` (the terms of the last row); {} for no rows."""
    if not rows:
        return {}
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[-1]}


class TrainingLog:
    """A run's step, training seconds and loss terms: the last ``window`` steps' and a history."""

    def __init__(self, step: int = 0, seconds: float = 0.0, history: list[dict[str, float]] | None = None,
                 window: int = 50, every: int = 10):
        self.step, self.seconds = step, seconds
        self.history = history if history is not None else []
        self.recent: list[dict[str, float]] = []
        self.window, self.every = window, every

    def add(self, terms: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
        """Record the terms (tensors or numbers) of the current step; returns them as floats."""
        row = {k: v.item() if isinstance(v, torch.Tensor) else float(v) for k, v in terms.items()}
        self.recent = (self.recent + [row])[-self.window:]
        if self.step % self.every == 0:
            self.history.append({"step": self.step, **mean_losses(self.recent[-self.every:])})
        return row

    def mean(self) -> dict[str, float]:
        """Mean of each term over the last ``window`` steps ({} before the first step)."""
        return mean_losses(self.recent)

    def postfix(self) -> dict[str, str]:
        """The terms for a progress bar, short: their mean over the last ``window`` steps, so that the bar
        ends on the final losses the run reports (one step's terms swing with its crop; early in a run
        the last step's are far below the window's mean)."""
        return {k: f"{v:.3g}" for k, v in self.mean().items()}


class LoopConfig(Protocol):
    steps: int                   # stop at this step
    time_limit_s: float | None   # or once the training seconds reach this
    sample_every: int
    checkpoint_every: int


def run_progress(cfg: LoopConfig, step: int, seconds: float) -> float:
    """How far a run is, in [0, 1], towards whichever limit (steps or training time) ends it first."""
    return min(1.0, max(step / cfg.steps, seconds / cfg.time_limit_s if cfg.time_limit_s else 0.0))


def cosine(start: float, end: float | None, progress: float) -> float:
    """A value decaying from ``start`` to ``end`` along a half cosine as ``progress`` goes 0 -> 1;
    ``start`` throughout for ``end`` None (a constant learning rate)."""
    if end is None:
        return start
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def train_steps(log: TrainingLog, cfg: LoopConfig, losses: Callable[[], Mapping[str, torch.Tensor]],
                optimizer: torch.optim.Optimizer, sample: Callable[[], None], checkpoint: Callable[[], object],
                desc: str, progress: bool = True) -> None:
    """Step ``optimizer`` on ``losses()["total"]`` from ``log.step`` until ``cfg.steps`` or ``cfg.time_limit_s``.

    ``losses`` makes a batch and returns the loss terms with their sum as ``"total"``;
    ``sample`` and ``checkpoint`` run every ``cfg.sample_every`` / ``cfg.checkpoint_every`` steps.
    """
    # a time limit draws the bar in training seconds (a step count may be a mere ceiling: NO_STEP_LIMIT)
    by_time = cfg.time_limit_s is not None
    bar = tqdm(total=round(cfg.time_limit_s) if by_time else cfg.steps, initial=round(log.seconds) if by_time else log.step,
               disable=not progress, desc=desc, unit="s" if by_time else "step")
    while log.step < cfg.steps and (cfg.time_limit_s is None or log.seconds < cfg.time_limit_s):
        t0 = time.perf_counter()
        terms = losses()
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        log.step += 1
        log.seconds += time.perf_counter() - t0
        log.add(terms)
        bar.update(min(round(log.seconds), bar.total) - bar.n if by_time else 1)
        bar.set_postfix({"step": log.step, **log.postfix()} if by_time else log.postfix())
        if log.step % cfg.sample_every == 0:
            sample()
        if log.step % cfg.checkpoint_every == 0:
            checkpoint()
    bar.close()


def save_loss_curve(path: Path, history: list[dict[str, float]]) -> None:
    """Each term of ``history`` (entries ``{"step": s, term: value, ...}``) against the step, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [h["step"] for h in history]
    for key in [k for k in history[-1] if k != "step"]:
        ax.plot(steps, [h.get(key, np.nan) for h in history], label=key)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def image_grid(rows: Sequence[torch.Tensor], pad: int = 0) -> np.ndarray:
    """Rows of (B, 3, H, W) images in [0, 1] -> one uint8 (rows*H, B*W, 3) image.

    ``pad`` > 0 draws a black border of that width around every image (shared between
    neighbours, as ``torchvision.utils.make_grid(..., padding=pad)``).
    """
    rows = [r.detach().clamp(0, 1).cpu() for r in rows]
    n, (c, h, w) = rows[0].shape[0], rows[0].shape[1:]
    img = torch.zeros(c, len(rows) * (h + pad) + pad, n * (w + pad) + pad, dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        for j, x in enumerate(r):
            y0, x0 = pad + i * (h + pad), pad + j * (w + pad)
            img[:, y0:y0 + h, x0:x0 + w] = x
    return (img.permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def save_png(path: Path, image: np.ndarray) -> None:
    """A uint8 (H, W[, 3]) image as PNG, making the folder."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def save_grid(path: Path, rows: Sequence[torch.Tensor], pad: int = 0) -> None:
    """``image_grid(rows, pad)`` as a PNG (training samples, evaluation grids)."""
    save_png(path, image_grid(rows, pad))
