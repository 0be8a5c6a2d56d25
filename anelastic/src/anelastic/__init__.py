"""anelastic: exact anelastic sensitivity kernels with parsimonious storage."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("anelastic")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
