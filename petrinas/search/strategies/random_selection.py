"""Baseline: Petridish with the finalized node's pairs chosen at random.

Parents are sampled as in Petridish; each child's candidate is trained exactly as in
Petridish (same search phase, same compute, same weights trained), but the finalized
node takes k uniformly random non-`none` (input, op) pairs instead of the top-k |alpha|.
So it differs from Petridish in the selection rule alone. (Skipping the search phase,
which random selection does not need, would make each child cheaper, but would also
change the weights the child starts from.)
"""

from petrinas.search.strategies.petridish import Petridish
from petrinas.search.strategy import register


@register("random_selection")
class RandomSelection(Petridish):
    selection = "random"
