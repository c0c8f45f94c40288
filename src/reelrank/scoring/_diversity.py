"""The diversity rule: a greedy re-rank that breaks up long runs of one creator or sound.

Given a ranked list, the rule builds the output one position at a time. At each
position it takes the best-ranked remaining item that does not extend a run past its
limit:

* at most ``max_creator_run`` consecutive items from the same creator;
* at most ``max_sound_run`` consecutive items using the same sound (items without a
  sound never form a run).

If every remaining item would break a limit (say only one creator is left), the
best-ranked remaining item is taken anyway: the rule reorders, it never drops. When
no limit is hit, the output is the input order, so the rule "keeps order otherwise".
Each step scans forward from the best remaining item, so the cost is ``O(n * s)``
where ``s`` is how far it had to skip; ``O(n^2)`` only for a list dominated by one
creator.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import Field

from .._kernels._diversity import NO_SOUND, diversify_kernel
from ..exceptions import InvalidInputError
from ..models._base import StrictModel

__all__ = ["DiversityRule", "NO_SOUND"]


class DiversityRule(StrictModel):
    """Limits on runs of the same creator or sound in a feed; ``None`` disables a limit."""

    max_creator_run: int | None = Field(default=2, ge=1)
    """Most consecutive items from one creator (``None``: no limit)."""
    max_sound_run: int | None = Field(default=3, ge=1)
    """Most consecutive items using one sound (``None``: no limit)."""

    def order(
        self, creator_ids: npt.ArrayLike, sound_ids: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.int64]:
        """Positions of the ranked items in diversified order.

        Args:
            creator_ids: the creator of each item, best-ranked first.
            sound_ids: the sound of each item (:data:`NO_SOUND` for none), or ``None``
                when no item has a sound.

        Returns:
            An ``int64`` permutation ``p`` of ``range(n)``: the re-ranked list is
            ``items[p]``.
        """
        creators = np.ascontiguousarray(creator_ids, dtype=np.int64)
        if creators.ndim != 1:
            raise InvalidInputError("creator_ids", "must be one-dimensional")
        n = creators.shape[0]
        if sound_ids is None:
            sounds = np.full(n, NO_SOUND, dtype=np.int64)
        else:
            sounds = np.ascontiguousarray(sound_ids, dtype=np.int64)
            if sounds.shape != creators.shape:
                raise InvalidInputError(
                    "sound_ids", f"expected shape {creators.shape}, got {sounds.shape}"
                )
        # A limit of n can never be exceeded, so it disables the rule without a branch.
        creator_limit = n + 1 if self.max_creator_run is None else self.max_creator_run
        sound_limit = n + 1 if self.max_sound_run is None else self.max_sound_run
        order = np.empty(n, dtype=np.int64)
        if n:
            diversify_kernel(creators, sounds, creator_limit, sound_limit, order)
        return order
