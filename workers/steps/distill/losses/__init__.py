"""Distillation losses (torchdistill's layout): registry.py holds the base class, the registry and
build_loss; each loss family is one module that imports the registry and registers on import:
response.py (single outputs: KD, CE, output matching, LwF), multi_output.py (one term per output of
any kind, for multi-output teachers), feature.py (FitNets, attention transfer), relational.py (RKD,
similarity-preserving) and transformer.py (MiniLM, TinyBERT). This __init__ imports every family, so
importing the package (or any module in it) fills the registry; no family imports the package."""

from edgedistill.workers.steps.distill.losses import feature, multi_output, relational, response, transformer
from edgedistill.workers.steps.distill.losses.registry import (
    FEATURES,
    LOSSES,
    Batch,
    DistillLoss,
    PairShape,
    WeightedSum,
    build_loss,
    register_loss,
)
from edgedistill.workers.steps.distill.losses.response import (
    CrossEntropyLoss,
    KDLoss,
    L1LogitsLoss,
    LwFLoss,
    LwFMSELoss,
    MSELabelsLoss,
    MSELogitsLoss,
)
from edgedistill.workers.steps.distill.methods import default_terms as method_terms

__all__ = [
    "FEATURES",
    "LOSSES",
    "Batch",
    "CrossEntropyLoss",
    "DistillLoss",
    "KDLoss",
    "L1LogitsLoss",
    "LwFLoss",
    "LwFMSELoss",
    "MSELabelsLoss",
    "MSELogitsLoss",
    "PairShape",
    "WeightedSum",
    "build_loss",
    "feature",
    "method_terms",
    "multi_output",
    "register_loss",
    "relational",
    "response",
    "transformer",
]
