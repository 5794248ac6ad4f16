"""Definitions every part of edgedistill shares: the job spec, device profiles, file formats, pipeline
events and stages, job statuses, task and queue names, and the artifact-kind registry.

This package imports nothing else of edgedistill (an import-linter contract in pyproject.toml checks it),
so the API, the engine, the worker, the agent and the client can all read it without pulling each other in.
"""
