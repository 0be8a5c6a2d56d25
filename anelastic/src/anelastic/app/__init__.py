"""The application on top of the library: what the ``anelastic`` command does.

- :mod:`.cli`: argument parsing, printing, exit codes;
- :mod:`.config`: TOML run configuration -> frozen objects;
- :mod:`.runs`: the ``forward`` and ``kernel`` runs (config -> simulations -> files);
- :mod:`.parallel`: many kernel events on Dask;
- :mod:`.demo`: ``anelastic demo``; :mod:`.plot`: PNG figures.
"""
