"""Sensitivity kernels: misfit -> adjoint source -> kernel pass over chunks -> kernels.

- :mod:`.inputs`: ``Event``, ``KernelSettings``, ``Storage`` and the fixed SLS fit;
- :mod:`.misfit`: misfits and their adjoint sources;
- :mod:`.storage`: the storage strategies (checkpoint, full, reverse, dispersion-only) behind
  one interface; :mod:`.snapshots` (the snapshot store), :mod:`.restart` (restart points of the
  kernel pass), :mod:`.reconstruction` (backward rebuild of a lossless field);
- :mod:`.schedule`: chunks and memory budgets, as arithmetic;
- :mod:`.operators`: the replay and adjoint operators of the kernel pass;
- :mod:`.compute`: ``compute_kernels``, the kernel pass (one loop over chunks);
- :mod:`.named`: the named kernels from the parameter gradients; :mod:`.progress`: bookkeeping.
"""
