"""Why an op the engine's students can emit is not on an MCU profile's op_allowlist: TFLite Micro
registers a kernel of that name but not for the types the student feeds it, so firmware would fail
at invoke. Used to make OpNotAllowed say what to change instead of only naming the op."""

from __future__ import annotations

# op -> what in the student makes it, and why TFLM cannot run it (checked with the tflite-micro
# interpreter: "Type 'INT32' is not supported by FLOOR_MOD").
UNRUNNABLE: dict[str, str] = {
    "FLOOR_MOD": (
        "FLOOR_MOD is the token student's id hashing (ids mod its vocabulary) on int32 ids; TFLite Micro's "
        "FLOOR_MOD kernel takes float32 only, so firmware cannot run it. Deploy this teacher to a CPU or "
        "mobile profile, or give the MCU a student whose vocabulary covers every token id without hashing"
    ),
    "FLOOR_DIV": "TFLite Micro's FLOOR_DIV kernel takes float32 only; integer index arithmetic cannot run on it",
}


def explain(ops: list[str]) -> str:
    """One sentence per op whose absence from the allowlist we know the reason for, else ''."""
    known = [UNRUNNABLE[op] for op in ops if op in UNRUNNABLE]
    return (" " + ". ".join(known) + ".") if known else ""
