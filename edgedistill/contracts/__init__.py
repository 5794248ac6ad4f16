"""Definitions every part of edgedistill shares; this package imports nothing else of edgedistill."""
