"""Self-checks: the tiny random-weight model zoo that ``hivis verify lossless`` ships with.

* :mod:`~hivis.selfcheck.zoo`: tiny random-weight VLMs of every family, built offline;
* :mod:`~hivis.selfcheck.inputs`: deterministic noise images and prompts;
* :mod:`~hivis.selfcheck.proposers`: scripted and oracle proposers;
* :mod:`~hivis.selfcheck.lossless`: ``hivis verify lossless`` (speculative output == the
  target's own greedy ``generate``, every family).

Nothing here touches the embedded world.
"""
