"""Forward modelling: the generic time integrator of any rheology of :mod:`anelastic.physics`.

- :mod:`.simulation`: ``Simulation`` (validation, stepping, state, seismograms), ``TimeAxis``;
- :mod:`.state`: ``SolverState``, the complete state at one step, and the problem fingerprint;
- :mod:`.propagator`: the Devito grid, fields, coefficients, sparse points and the compiled
  forward Operator of one problem shape (``forward_equations`` is shared with the replay);
- :mod:`.cache`: the one cache of compiled operators (forward, kernel, inverse step);
- :mod:`.runtime`: the process-wide OpenMP / Devito settings, applied before the first build.
"""
