"""Is every body part used? Per-part pixel shares and texel coverage of a textured avatar.

A textured avatar fails quietly when a part stops being predicted: its texture is never
sampled, another part's texture stretches over its pixels and the output still scores
well on a black background. So initialisation and training measure, per part, its share
of the part-assignment weight over the ground-truth body pixels (against the share the
targets give it) and the share of its texels that some training pixel samples; a part the
generator no longer predicts is an error (``PartLostError``), not a black texture.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from avatars.avatar.init import texel_index
from avatars.body.skeleton import PARTS

USED_SHARE = 0.005      # a part is used with >= 0.5% of the part weight over the body (a hand ~1.5%)
LOST_RATIO = 0.1        # at initialisation: lost below a tenth of its expected share


class PartLostError(ValueError):
    """The generator predicts (almost) no pixel of some part."""


@dataclass
class PartTally:
    """Running sums over frames: part weight over body pixels, expected labels, sampled texels."""

    num_parts: int
    texture_size: int
    weight: torch.Tensor = field(init=False)
    expected: torch.Tensor = field(init=False)
    texels: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.reset()

    def reset(self) -> None:
        n, t = self.num_parts, self.texture_size
        self.weight, self.expected = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        self.texels = torch.zeros(n * t * t, dtype=torch.bool)

    @torch.no_grad()
    def add(self, parts: torch.Tensor, uv: torch.Tensor, body: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """parts (B, n+1, H, W) probabilities, uv (B, 2n, H, W), body (B, H, W) bool (ground truth),
        labels (B, H, W) the targets' part index (n off the body), where known."""
        n, t = self.num_parts, self.texture_size
        fg = body[:, None].to(parts.dtype)
        self.weight += (parts[:, :n] * fg).sum((0, 2, 3)).double().cpu()
        if labels is not None:
            self.expected += torch.bincount(labels[body].flatten().cpu(), minlength=n + 1)[:n].double()
        _, flat = texel_index(parts, uv, t)
        self.texels[flat[body & (parts.argmax(1) < n)].cpu()] = True

    def shares(self) -> torch.Tensor:
        """(n,) each part's share of the part weight over body pixels."""
        return self.weight / self.weight.sum().clamp_min(1e-12)

    def expected_shares(self) -> torch.Tensor | None:
        return self.expected / self.expected.sum() if self.expected.sum() > 0 else None

    def coverage(self) -> torch.Tensor:
        """(n,) share of each part's texels sampled by some pixel (nearest texel of the likeliest part)."""
        t = self.texture_size
        return self.texels.view(self.num_parts, t * t).double().mean(1)

    def summary(self) -> dict[str, list[float]]:
        out = {"share": [round(float(x), 5) for x in self.shares()],
               "coverage": [round(float(x), 4) for x in self.coverage()]}
        exp = self.expected_shares()
        if exp is not None:
            out["expected"] = [round(float(x), 5) for x in exp]
        return out

    def parts_used(self) -> int:
        return int((self.shares() >= USED_SHARE).sum())

    def table(self) -> str:
        """One line per part: predicted vs expected share of the body, texel coverage."""
        exp = self.expected_shares()
        lines = [f"{'part':<16} {'predicted':>9} {'expected':>9} {'texels':>7}"]
        for i, name in enumerate(PARTS[:self.num_parts]):
            e = f"{100 * float(exp[i]):8.2f}%" if exp is not None else f"{'-':>9}"
            lines.append(f"{name:<16} {100 * float(self.shares()[i]):8.2f}% {e} {100 * float(self.coverage()[i]):6.1f}%")
        return "\n".join(lines)

    def lost(self) -> list[str]:
        """Parts with no weight at all, or (where the targets are known) under LOST_RATIO of their expected share."""
        s, exp = self.shares(), self.expected_shares()
        floor = exp * LOST_RATIO if exp is not None else torch.zeros_like(s)
        return [PARTS[i] for i in range(self.num_parts) if s[i] <= floor[i] or s[i] < 1e-6]

    def check(self) -> None:
        lost = self.lost()
        if lost:
            raise PartLostError(f"the generator predicts (almost) no pixel of {len(lost)} part(s): {', '.join(lost)} "
                                f"(their textures would never be learned)\n{self.table()}")


def part_colours(parts: torch.Tensor) -> torch.Tensor:
    """(B, n+1, H, W) probabilities -> (B, 3, H, W) picture of the likeliest part (background black)."""
    import matplotlib

    n = parts.shape[1] - 1
    palette = torch.tensor([matplotlib.colormaps["tab20"](i)[:3] for i in range(n)] + [(0.0, 0.0, 0.0)],
                           dtype=parts.dtype, device=parts.device)
    return palette[parts.argmax(1)].permute(0, 3, 1, 2)


def save_part_curves(path, history: list[dict[str, float]], part_history: list[dict]) -> None:
    """Loss terms, per-part shares of the body and texel coverage against the step, in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [h["step"] for h in history]
    for key in [k for k in history[-1] if k != "step"] if history else []:
        axes[0].plot(steps, [h.get(key, float("nan")) for h in history], label=key)
    axes[0].set_yscale("log")
    axes[0].set_title("loss")
    axes[0].legend(fontsize=7)
    ps = [h["step"] for h in part_history]
    for ax, key, title in ((axes[1], "share", "share of body pixels"), (axes[2], "coverage", "texels sampled")):
        for i, name in enumerate(PARTS):
            ax.plot(ps, [h[key][i] for h in part_history], label=name, color=plt.cm.tab20(i))
        ax.set_title(title)
        ax.set_yscale("log" if key == "share" else "linear")
    axes[1].axhline(USED_SHARE, color="k", ls=":", lw=1)
    axes[2].legend(fontsize=6, ncol=2)
    for ax in axes:
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
