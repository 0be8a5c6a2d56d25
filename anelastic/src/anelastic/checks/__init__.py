"""Self-checks: analytic solutions and what ``anelastic verify analytic | kernels`` runs.

- :mod:`.solutions`: analytic frequency-domain solutions (homogeneous media, exact SLS moduli);
- :mod:`.analytic`: the ``verify analytic`` cases (registry, viscoacoustic cases) and
  :mod:`.point_force` (its (visco)elastic point-force cases);
- :mod:`.kernels`: the ``verify kernels`` checks (checkpoint = full, finite differences, time
  steps, dispersion-only against exact);
- :mod:`.spectral`: Q measured from synthetic data by spectral ratio;
- :mod:`.problem`: the small forward problems the checks run.
"""
