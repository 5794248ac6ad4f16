"""The teacher-derived student family (issue 14, item 1): the teacher's own graph, converted to trainable
torch (convert.py, onnx_ops.py), channel-pruned and layer-dropped to the profile's target (prune.py),
built by build_student and distilled with hints at the exactly corresponding layers (build.py, pairs.py)."""
