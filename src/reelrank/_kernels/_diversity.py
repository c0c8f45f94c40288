"""_kernels._diversity."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import numpy.typing as npt

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
