"""Safety: a concept-embedding checker, classifier adapters, calibration, metrics and prompts.

`checker` (the bottom: ClipEmbedder, ConceptChecker, filter_unsafe), `adapters` (the `checker`,
`q16` and `nudenet` classifiers), `calibrate` (fitting a checker on labelled images) and `metrics`
(the `safety` and `i2p` metrics, the `redteam` prompt set). Import from the submodules; the names
below are re-exported for convenience.
"""

from evaluation.safety.adapters import classifier_names, get_classifier
from evaluation.safety.calibrate import CalibrationConfig, calibrate, world_checker
from evaluation.safety.checker import ClipEmbedder, ConceptChecker, filter_unsafe
from evaluation.safety.metrics import redteam

__all__ = [
    "CalibrationConfig",
    "ClipEmbedder",
    "ConceptChecker",
    "calibrate",
    "classifier_names",
    "filter_unsafe",
    "get_classifier",
    "redteam",
    "world_checker",
]
