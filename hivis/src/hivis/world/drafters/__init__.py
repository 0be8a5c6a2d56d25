"""The world's drafters: their build from a trained target (``pipeline``, ``hivis world
build``) and the shipped models (``shipped``: assets, loading, held-out test cases)."""
