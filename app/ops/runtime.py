"""Tuning for Recoup's long-running processes (the RQ workers, the web processes), done once as each starts.

Python's cyclic garbage collector runs a young-generation pass every 700 new container objects, and every tenth of
those an older one that looks again at everything that survived, including the tens of thousands of objects a
process loads once and keeps for its whole life (the app, the models' mappers, the templates, the DSL's grammar).
A dispatching worker makes thousands of short-lived objects per message (ORM rows, events, requests), so it paid
for several hundred passes per 3,000 messages, about a twentieth of its CPU (measured with ``bench/dispatch.py``).
:func:`settle_garbage_collector` moves what the process has loaded out of the collector's sight (``gc.freeze``)
and lets more young objects come before a pass: the passes are fewer and each looks only at what is new. Cycles
are still collected; reference counting frees everything else at once, as before.
"""

from __future__ import annotations

import gc

#: a young pass every 10,000 new container objects (700 by default); an older pass every 20 of them (10)
GC_THRESHOLDS = (10_000, 20, 20)


def settle_garbage_collector() -> None:
    """Call once the process has loaded what it keeps for its life: collect what start-up left, freeze the rest
    (it is never looked at again), and space the passes out (:data:`GC_THRESHOLDS`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
