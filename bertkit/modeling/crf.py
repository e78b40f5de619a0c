"""A linear-chain CRF over a tagger's per-word scores (`finetune.task.crf=true`), for BERT and the BiLSTM.

    crf = CRF(num_tags)
    loss = crf.loss(logits, labels)          # logits (B, T, C); labels (B, T), -100 where no word starts
    tags = crf.decode(logits, keep)          # keep (B, T) bool: the positions that carry a word's tag

A softmax tagger picks each word's tag alone, so it can output I-ORG after B-PER or an entity that starts with
I-; the CRF scores whole tag sequences (emission + learned transition, start and end scores) and decodes the
best one with Viterbi (Lafferty et al. 2001; the head of the classic BiLSTM-CRF and of UER-py's "crf" target).
Only the first piece of each word carries a tag: those positions are gathered into a dense sequence per row, so
the transitions link word to word, whatever the pieces between them.

No library: pytorch-crf, the usual one, has had no release since 2019 and needs a contiguous mask.
"""

from __future__ import annotations

import torch
from torch import nn

from bertkit.data.padding import IGNORE_INDEX


def gather_words(scores: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, W, …) the rows of `scores` (B, T, …) at the `keep` positions, moved to the front in order, and the
    (B, W) mask of the real ones; W is the most any row keeps."""
    width = max(int(keep.sum(1).max()), 1)
    # A stable sort of "not kept" brings the kept positions first, in their order.
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :width]
    index = order.view(*order.shape, *[1] * (scores.dim() - 2)).expand(-1, -1, *scores.shape[2:])
    return scores.gather(1, index), keep.gather(1, order)


class CRF(nn.Module):
    def __init__(self, num_tags: int):
        super().__init__()
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def reset_parameters(self) -> None:
        """Zero scores: the CRF starts as the softmax tagger it refines."""
        for p in (self.transitions, self.start, self.end):
            nn.init.zeros_(p)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of the gold tag sequences, summed over rows and divided by the number of
        tagged words: the scale of token cross-entropy, so the fine-tuning LR carries over."""
        keep = labels != IGNORE_INDEX
        emissions, mask = gather_words(logits.float(), keep)
        tags, _ = gather_words(labels, keep)
        tags = tags.masked_fill(~mask, 0)
        return (self._log_partition(emissions, mask) - self._score(emissions, tags, mask)).sum() / mask.sum().clamp(
            min=1
        )

    def _score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) the score of each row's tag path."""
        emit = emissions.gather(2, tags[..., None]).squeeze(2)  # (B, W)
        step = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, W-1)
        last = tags.gather(1, (mask.sum(1, keepdim=True) - 1).clamp(min=0)).squeeze(1)
        score = self.start[tags[:, 0]] + (emit * mask).sum(1) + (step * mask[:, 1:]).sum(1) + self.end[last]
        return score * mask[:, 0]  # a row without words scores 0, as its partition does

    def _log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) log of the summed exp-scores of every tag path (the forward algorithm)."""
        alpha = self.start + emissions[:, 0]  # (B, C)
        for t in range(1, emissions.shape[1]):
            nxt = torch.logsumexp(alpha[:, :, None] + self.transitions + emissions[:, t, None, :], dim=1)
            alpha = torch.where(mask[:, t, None], nxt, alpha)
        return torch.logsumexp(alpha + self.end, dim=1) * mask[:, 0]

    @torch.no_grad()
    def decode(self, logits: torch.Tensor, keep: torch.Tensor) -> list[list[int]]:
        """Each row's best tag sequence (Viterbi) over its `keep` positions, in order."""
        emissions, mask = gather_words(logits.float(), keep)
        score = self.start + emissions[:, 0]  # (B, C)
        back = []
        for t in range(1, emissions.shape[1]):
            best, arg = (score[:, :, None] + self.transitions).max(dim=1)  # over the previous tag
            back.append(arg)
            score = torch.where(mask[:, t, None], best + emissions[:, t], score)
        last = (score + self.end).argmax(1).tolist()
        lengths = mask.sum(1).tolist()
        back = torch.stack(back, 1).tolist() if back else []
        paths = []
        for row, (tag, n) in enumerate(zip(last, lengths, strict=True)):
            path = [tag]
            for t in range(n - 1, 0, -1):
                path.append(back[row][t - 1][path[-1]])
            paths.append(path[::-1] if n else [])
        return paths
