"""A fixed held-out part of the training set, so that a study can tune on it and never read the validation set.

Tuning on val and then reporting val picks the configuration that got lucky on those 3,925 images, and the reported
number is biased upward by exactly that luck. A tuning trial therefore trains on `train` minus a held-out part and
is scored on that part; the val folder is read only by the finals.

The split is stratified (each class keeps its share) and drawn from its own seed, independent of the run seed: every
trial of every model holds out the same images, so trials differ only in their configuration.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def holdout_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(kept, held_out): indices into `labels`, each sorted, disjoint, together all of them.

    Per class, `round(fraction * n)` images are held out (at least one where `fraction > 0`, never the class's last
    one), chosen by a permutation seeded by (`seed`, class) alone: adding images to one class does not move another
    class's held-out images.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    held: list[int] = []
    for label, members in sorted(by_class.items()):
        n = len(members)
        take = min(max(1, round(fraction * n)), n - 1) if fraction > 0 else 0
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + label)).tolist()
        held += [members[k] for k in order[:take]]
    held_set = set(held)
    return [i for i in range(len(labels)) if i not in held_set], sorted(held)


def split_digest(paths: Sequence[str]) -> str:
    """A short hash of the held-out files (relative paths): a study records it, so a later session can tell that its
    trials held out the same images."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.encode() + b"\n")
    return h.hexdigest()[:16]
