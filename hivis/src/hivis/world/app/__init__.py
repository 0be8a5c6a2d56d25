"""Applications on the shipped world: ``hivis bench`` (``bench``), ``hivis demo`` (``demo``,
with ``demo_onthefly`` as its fallback) and their command-line registration (``cli``)."""
