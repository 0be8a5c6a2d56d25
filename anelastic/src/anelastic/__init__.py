"""anelastic: exact anelastic sensitivity kernels with parsimonious storage."""
