"""Initialising a textured avatar (thesis section 6.3.5): pre-training targets, loss, texel means.

The paper pre-trains the generator on DensePose part labels and coordinates, then sets each
texel to the mean of the training pixels mapped to it. On the mannequin the targets are its
exact part and UV maps (``surface_targets``: DensePose's role, with ground truth). On a real
video the paper transfers a trained avatar's generator instead (``avatars.avatar.training``);
where neither is possible the labels come from the skeleton (the fallback, trained with a
class-balanced loss so that small parts are not given up for the background): every
foreground pixel belongs to the body part whose bone
is nearest, distance measured in units of that part's typical half-width (a capsule
distance: the wide torso wins over a thin arm passing close to it). Its coordinates are
the position along the bone (u in [0, 1]) and across it (signed, in half-widths, mapped to
[0, 1]); the across-coordinate uses the upper half of the texture when the body faces the
camera and the lower half when it faces away, so front and back do not average into one
texel. The end-to-end training is then free to reshape this parameterisation (Fig. 6.3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from avatars.body.skeleton import JOINT_NAMES, LM, NUM_PARTS, PART, VIRTUAL_JOINTS

_J = {name: i for i, name in enumerate(JOINT_NAMES)}

# part -> (bone from, bone to, half-width in torso lengths)
PART_BONES: dict[str, tuple[str, str, float]] = {
    "head": ("left_ear", "right_ear", 0.3),
    "torso": ("mid_shoulder", "mid_hip", 0.45),
    "pelvis": ("left_hip", "right_hip", 0.3),
    "left_upper_arm": ("left_shoulder", "left_elbow", 0.12),
    "right_upper_arm": ("right_shoulder", "right_elbow", 0.12),
    "left_forearm": ("left_elbow", "left_wrist", 0.1),
    "right_forearm": ("right_elbow", "right_wrist", 0.1),
    "left_hand": ("left_wrist", "left_index", 0.1),
    "right_hand": ("right_wrist", "right_index", 0.1),
    "left_thigh": ("left_hip", "left_knee", 0.17),
    "right_thigh": ("right_hip", "right_knee", 0.17),
    "left_shin": ("left_knee", "left_ankle", 0.13),
    "right_shin": ("right_knee", "right_ankle", 0.13),
    "left_foot": ("left_heel", "left_foot_index", 0.1),
    "right_foot": ("right_heel", "right_foot_index", 0.1),
}
assert list(PART_BONES) == [p for p in PART], "PART_BONES must follow avatars.body.skeleton.PARTS"
_A = torch.tensor([_J[a] for a, _, _ in PART_BONES.values()])
_B = torch.tensor([_J[b] for _, b, _ in PART_BONES.values()])
_WIDTH = torch.tensor([w for _, _, w in PART_BONES.values()])
ACROSS_RANGE = 1.5  # half-widths either side of the bone mapped onto the across-coordinate


def _joints(keypoints: torch.Tensor) -> torch.Tensor:
    extra = [0.5 * (keypoints[:, i, :3] + keypoints[:, j, :3]) for _, (i, j) in VIRTUAL_JOINTS]
    return torch.cat([keypoints[..., :3], torch.stack(extra, 1)], 1)


def skeleton_labels(keypoints: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Part labels and coordinates from keypoints (B, 33, 4) (crop pixels) and masks (B, H, W).

    Returns ``labels`` (B, H, W) int64, ``NUM_PARTS`` on background (mask < 0.5), and ``uv``
    (B, 2, H, W) in [0, 1], the coordinates on the labelled part's texture.
    """
    b, h, w = mask.shape
    j = _joints(keypoints.float())                                  # (B, J, 3)
    a, d = j[:, _A, :2], j[:, _B, :2] - j[:, _A, :2]                 # (B, P, 2)
    torso = (j[:, _J["mid_shoulder"]] - j[:, _J["mid_hip"]]).norm(dim=-1).clamp_min(1.0)  # (B,)
    width = _WIDTH.to(j.device)[None] * torso[:, None]               # (B, P)
    ys, xs = torch.meshgrid(torch.arange(h, device=j.device, dtype=torch.float32),
                            torch.arange(w, device=j.device, dtype=torch.float32), indexing="ij")
    px = xs[None, None] - a[..., 0, None, None]                      # (B, P, H, W)
    py = ys[None, None] - a[..., 1, None, None]
    dx, dy = d[..., 0, None, None], d[..., 1, None, None]
    length2 = (dx * dx + dy * dy).clamp_min(1e-6)
    t = ((px * dx + py * dy) / length2).clamp(0, 1)
    across = (dx * py - dy * px) / length2.sqrt()                    # signed distance to the line
    dist = torch.hypot(px - t * dx, py - t * dy) / width[..., None, None]
    finite = torch.isfinite(dist)
    part = torch.where(finite, dist, torch.full_like(dist, float("inf"))).argmin(1)  # (B, H, W)
    pick = part[:, None]
    u = t.gather(1, pick)[:, 0]
    v = (across.gather(1, pick)[:, 0] / (width.gather(1, part.flatten(1)).view(b, h, w) * ACROSS_RANGE))
    v = (v.clamp(-1, 1) + 1) / 4                                     # [0, 0.5]: front half
    left, right = keypoints[:, LM["left_shoulder"], :2], keypoints[:, LM["right_shoulder"], :2]
    up = j[:, _J["mid_shoulder"], :2] - j[:, _J["mid_hip"], :2]
    s = left - right
    facing_away = (s[:, 0] * up[:, 1] - s[:, 1] * up[:, 0]) > 0      # z of (left - right) x up
    v = v + 0.5 * facing_away.float()[:, None, None]
    labels = torch.where(mask >= 0.5, part, torch.full_like(part, NUM_PARTS))
    uv = torch.nan_to_num(torch.stack([u, v], 1), 0.0).clamp(0, 1)
    return labels, uv


def surface_targets(part: torch.Tensor, uv: torch.Tensor, size: int,
                    num_parts: int = NUM_PARTS) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact part map (B, S, S) and uv (B, 2, S, S) area-resampled to the generator's ``size``:
    part probabilities (B, n+1, size, size), soft where a pixel straddles a part border, and the
    uv of each pixel's likeliest part, averaged over that part's source pixels only.

    Area, not nearest: a nearest 2x downsampling keeps the top-left source pixel of each block,
    which shifts the maps by half a pixel and turns part borders into stairs. Upsampled back to
    256 px with the true textures, nearest maps at 128 px score person-box SSIM 0.855, these 0.931
    (docs/avatar.md)."""
    probs = one_hot_parts(part, num_parts)
    if part.shape[-1] == size:
        return probs, uv

    def area(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=(size, size), mode="area")

    soft = area(probs)
    k = F.interpolate(soft.argmax(1, keepdim=True).float(), size=part.shape[-2:], mode="nearest").long()
    on_k = probs.gather(1, k)                   # source pixels on their block's likeliest part
    return soft, area(uv * on_k) / area(on_k).clamp_min(1e-6)


def one_hot_parts(labels: torch.Tensor, num_parts: int = NUM_PARTS) -> torch.Tensor:
    """Hard part labels (B, H, W), ``num_parts`` on background -> probabilities (B, n+1, H, W)."""
    return F.one_hot(labels, num_parts + 1).permute(0, 3, 1, 2).float()


def class_weights(probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy weights proportional to 1/sqrt(frequency) of each part in the targets
    (B, n+1, H, W), mean 1 over the classes present: a hand (~0.1% of the pixels) then counts
    ~30x more than the background (~90%), enough that no part is given up, not so much that the
    background leaks."""
    freq = probs.sum((0, 2, 3))
    w = torch.where(freq > 0, freq.clamp_min(1).rsqrt(), 0.0)
    return w * (freq > 0).sum() / w.sum()


def pretrain_loss(logits: torch.Tensor, coords: torch.Tensor, probs: torch.Tensor,
                  uv: torch.Tensor, weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Cross-entropy against the part probabilities (B, n+1, H, W) (``weight`` per class, e.g.
    ``class_weights``; normalised by the targets' total weight, as for hard labels), the unweighted
    mask BCE (the weights make background cheap; this keeps the silhouette tight) and L1 on the
    coordinates of each body pixel's likeliest part."""
    n = probs.shape[1] - 1
    w = probs if weight is None else probs * weight.view(1, -1, 1, 1)
    ce = -(w * logits.log_softmax(1)).sum() / w.sum().clamp_min(1e-12)
    mask_logit = torch.logsumexp(logits[:, :-1], 1) - logits[:, -1]
    bce = F.binary_cross_entropy_with_logits(mask_logit, 1 - probs[:, n])
    labels = probs.argmax(1)
    fg = labels < n
    pred = part_uv(coords, labels.clamp(max=n - 1))
    l1 = ((pred - uv).abs().sum(1) * fg).sum() / fg.sum().clamp_min(1)
    return {"part_ce": ce, "mask": bce, "uv_l1": l1, "total": ce + bce + l1}


def part_uv(uv: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per pixel, the coordinates of part ``k`` (B, H, W) from the stacked uv (B, 2n, H, W): (B, 2, H, W)."""
    b, c, h, w = uv.shape
    return uv.view(b, c // 2, 2, h, w).gather(1, k[:, None, None].expand(-1, -1, 2, -1, -1))[:, 0]


def texel_index(parts: torch.Tensor, uv: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel, the likeliest part k (B, H, W) and the flat index into (n, T, T) of its nearest texel."""
    k = parts[:, :uv.shape[1] // 2].argmax(1)
    coords = part_uv(uv, k)
    tex = (coords * size).long().clamp(0, size - 1)                  # texel of u (column), v (row)
    return k, (k * size + tex[:, 1]) * size + tex[:, 0]


@torch.no_grad()
def accumulate_texels(parts: torch.Tensor, uv: torch.Tensor, rgb: torch.Tensor, mask: torch.Tensor,
                      sums: torch.Tensor, counts: torch.Tensor) -> None:
    """Add each foreground pixel's colour to the texel it maps to (hard part, nearest texel).

    parts (B, n+1, H, W) probabilities, uv (B, 2n, H, W), rgb (B, 3, H, W), mask (B, H, W);
    ``sums`` (n, 3, T, T) and ``counts`` (n, T, T) are updated in place.
    """
    n, _, size, _ = sums.shape
    _, flat = texel_index(parts, uv, size)
    fg = (parts.argmax(1) < n) & (mask >= 0.5)
    idx = flat[fg]
    counts.view(-1).index_add_(0, idx, torch.ones_like(idx, dtype=counts.dtype))
    colours = rgb.permute(0, 2, 3, 1)[fg]                            # (N, 3)
    s = sums.permute(0, 2, 3, 1).reshape(-1, 3)
    sums.copy_(s.index_add(0, idx, colours.to(s.dtype)).view(n, size, size, 3).permute(0, 3, 1, 2))


def mean_textures(sums: torch.Tensor, counts: torch.Tensor, prior: float = 0.0) -> torch.Tensor:
    """Texel = mean of its pixels; texels no pixel mapped to are black (the paper's rule, ``prior`` 0).

    With ``prior`` k > 0 each texel is instead (sum + k * m) / (count + k), m the same estimate one
    mip level coarser (recursively): unseen texels take their neighbourhood's mean and a texel seen
    by one pixel is not that pixel's noise. At 256x256 texels a hand's texture is mostly unseen
    and most seen texels have one or two pixels, so black texels and single-pixel outliers are
    what bilinear sampling shows as speckles."""
    if prior <= 0 or counts.shape[-1] < 2:   # the paper's mean; at 1x1 texels, the plain mean of the part
        return sums / counts.clamp_min(1)[:, None]
    coarse = mean_textures(F.avg_pool2d(sums, 2) * 4, F.avg_pool2d(counts[:, None], 2)[:, 0] * 4, prior)
    up = F.interpolate(coarse, scale_factor=2, mode="nearest")
    return (sums + prior * up) / (counts + prior)[:, None]
