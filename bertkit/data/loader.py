"""Data order and per-example randomness that do not depend on batching, process count or restarts.

    sampler = EpochSampler(len(dataset), seed=42)           # permutation of epoch e from (seed, e)
    keyed = KeyedDataset(dataset, seed=42)                    # keyed[(e, i)] = example i + its mask seed
    DataLoader(keyed, batch_size=32, sampler=sampler, collate_fn=PretrainingCollator(...))

Each example's masks are drawn from a generator seeded by (seed, epoch, index), so 1 process with batch 32
and 2 processes with batch 16 see the same corrupted examples, and a resumed run sees the masks the
uninterrupted run would have seen. Resuming skips batches at the sampler, without drawing any randomness.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler


def mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps), so nearby inputs give unrelated seeds."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return x >> 1


class EpochSampler(Sampler):
    """Yields (epoch, index) keys: a permutation drawn from (seed, epoch), or the identity order."""

    def __init__(self, size: int, seed: int, shuffle: bool = True):
        self.size, self.seed, self.shuffle, self.epoch = size, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(mix(self.seed, self.epoch)))
        else:
            order = torch.arange(self.size)
        return ((self.epoch, i) for i in order.tolist())


class KeyedDataset(Dataset):
    """A dataset indexed by (epoch, index) keys; each example gets `mask_seed` = mix(seed, epoch, index)."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        return {**self.dataset[index], "mask_seed": mix(self.seed, epoch, index)}
