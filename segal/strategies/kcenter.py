"""k-center greedy (Sener & Savarese, ICLR 2018), shared by core-set and VAAL's diversity step.

No N×N matrix is ever built: a running vector of each point's squared distance to its nearest
centre is initialised block by block (``chunk``×``chunk`` distances at a time) and updated with one
new centre per step, so the cost is O(N·(L + k)·D) time and O(N + chunk²) extra memory.
"""

from __future__ import annotations

import torch

from segal.progress import Progress


def min_sq_distances(x: torch.Tensor, centres: torch.Tensor, chunk: int) -> torch.Tensor:
    """Squared distance from each row of ``x`` to its nearest row of ``centres``, in chunk×chunk blocks."""
    out = torch.full((len(x),), float("inf"), dtype=x.dtype, device=x.device)
    for x0 in range(0, len(x), chunk):
        xs = x[x0 : x0 + chunk]
        xs_sq = (xs * xs).sum(1)
        for c0 in range(0, len(centres), chunk):
            c = centres[c0 : c0 + chunk]
            block = xs_sq[:, None] + (c * c).sum(1)[None, :] - 2.0 * (xs @ c.T)
            out[x0 : x0 + chunk] = torch.minimum(out[x0 : x0 + chunk], block.min(1).values)
    return out.clamp_min_(0)


def kcenter_greedy(
    pool: torch.Tensor,
    centres: torch.Tensor,
    k: int,
    *,
    chunk: int = 2048,
    first: int = 0,
    progress: Progress | None = None,
) -> tuple[list[int], list[float], float | None, float]:
    """Pick ``k`` rows of ``pool`` greedily; returns (positions, distance at pick, radius before, radius after).

    Ties go to the lowest position (``torch.argmax`` returns the first maximum).  With no
    ``centres`` the first pick is ``first`` and the radius before is ``None``.
    """
    progress = progress or Progress()
    if len(centres):
        nearest = min_sq_distances(pool, centres, chunk)
        radius_before = float(nearest.max().sqrt()) if len(pool) else 0.0
    else:
        nearest = torch.full((len(pool),), float("inf"), dtype=pool.dtype, device=pool.device)
        radius_before = None
    chosen: list[int] = []
    picked_at: list[float] = []
    for step in progress.track(range(k), total=k, description="k-center greedy"):
        i = first if step == 0 and not len(centres) else int(torch.argmax(nearest))
        d = float(nearest[i])
        picked_at.append(0.0 if d == float("inf") else d**0.5)
        chosen.append(i)
        centre = pool[i]
        for x0 in range(0, len(pool), chunk):
            block = ((pool[x0 : x0 + chunk] - centre) ** 2).sum(1)
            nearest[x0 : x0 + chunk] = torch.minimum(nearest[x0 : x0 + chunk], block)
        nearest[i] = -float("inf")  # never picked twice, even among exact duplicates
    radius_after = float(nearest.max().clamp_min(0).sqrt()) if len(chosen) < len(pool) else 0.0
    return chosen, picked_at, radius_before, radius_after
