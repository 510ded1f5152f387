"""Process-wide settings for the long-running commands (`safecity run`, `safecity sink`)."""

from __future__ import annotations

import gc


def settle_heap() -> None:
    """Call once start-up is done (modules imported, models loaded): what is loaded by then stays, so
    it is frozen out of the collector's passes, and young objects are collected less often. The hot
    loops allocate a few containers per event or frame and keep none; with the defaults (a pass every
    700 allocations, now and then over everything loaded) the sink spent about a third of its time
    collecting and the sender about a fifth."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
