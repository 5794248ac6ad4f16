"""The derived family's one error type, in its own module so the conversion routes (convert.py,
tflite_route.py) can both raise it without importing each other."""

from __future__ import annotations

from edgedistill.contracts.errors import InputError


class ConversionError(InputError):
    """The teacher cannot be turned into a trainable torch graph; the message says why."""
