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

from typing import Any

import numba
import numpy as np
import numpy.typing as npt
from pydantic import Field

from ._config import StrictModel
from .exceptions import InvalidInputError

__all__ = ["NO_SOUND", "DiversityRule"]

NO_SOUND = -1
"""Sound id used for items without a sound; they never form a sound run."""

_njit: Any = numba.njit(cache=True, nogil=True)


def _diversify_kernel(
    creators: npt.NDArray[np.int64],
    sounds: npt.NDArray[np.int64],
    max_creator_run: int,
    max_sound_run: int,
    order: npt.NDArray[np.int64],
) -> None:
    n = creators.shape[0]
    taken = np.zeros(n, dtype=np.bool_)
    first = 0
    last_creator = np.int64(-1)
    creator_run = 0
    last_sound = np.int64(NO_SOUND)
    sound_run = 0
    for position in range(n):
        while taken[first]:
            first += 1
        chosen = -1
        for j in range(first, n):
            if taken[j]:
                continue
            if creator_run >= max_creator_run and creators[j] == last_creator:
                continue
            if sound_run >= max_sound_run and sounds[j] == last_sound and sounds[j] != NO_SOUND:
                continue
            chosen = j
            break
        if chosen < 0:
            chosen = first
        taken[chosen] = True
        order[position] = chosen
        creator = creators[chosen]
        if creator == last_creator:
            creator_run += 1
        else:
            last_creator = creator
            creator_run = 1
        sound = sounds[chosen]
        if sound == NO_SOUND:
            last_sound = np.int64(NO_SOUND)
            sound_run = 0
        elif sound == last_sound:
            sound_run += 1
        else:
            last_sound = sound
            sound_run = 1


_diversify = _njit(_diversify_kernel)


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
            _diversify(creators, sounds, creator_limit, sound_limit, order)
        return order
