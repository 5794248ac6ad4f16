"""Thin wrappers that load and run one artifact kind each, importing their runtime library lazily."""
