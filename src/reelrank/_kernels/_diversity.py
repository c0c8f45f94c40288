"""The diversity re-rank kernel: reorder a ranked list so no creator or sound runs too long.

Private: :class:`reelrank.DiversityRule` validates the arrays and limits and describes
the rule; the kernel assumes two int64 arrays of one length and an int64 output of that
length.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._presets import serial_kernel

__all__ = ["NO_SOUND", "diversify_kernel"]

NO_SOUND = -1
"""Sound id used for items without a sound; they never form a sound run."""


@serial_kernel
def diversify_kernel(
    creators: Any,
    sounds: Any,
    max_creator_run: int,
    max_sound_run: int,
    order: Any,
) -> None:
    """Write into ``order`` the positions of the items in their diversified order.

    Each place takes the best remaining item (lowest position) that neither extends the
    current creator run to more than ``max_creator_run`` nor, when it has a sound, the
    current sound run to more than ``max_sound_run``; when none qualifies the best
    remaining item is taken anyway, so nothing is dropped.
    """
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
