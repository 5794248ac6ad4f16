"""edgedistill: distill, quantize to int8 and export edge artifacts for a named device.

The distribution installs this one package. `service/`, `workers/`, `agent/` and `migrations/` stay top-level
folders of the repository (the required layout) and appear here as `edgedistill.service` etc. through
relative symlinks, so every tool (setuptools, mypy, pytest) sees one namespace without import hooks.
"""

__version__ = "0.1.0"
