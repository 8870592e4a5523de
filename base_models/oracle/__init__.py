"""The attribute oracle: an evaluation instrument that reads objects, colours, sizes, positions,
background and style from any image of the procedural world, generated ones included.

It is trained on fresh procedural images held apart from the models it judges, and it is never
their training signal unless a command says so explicitly.
"""

from base_models.oracle.config import OracleConfig
from base_models.oracle.evaluate import ATTRIBUTES, attribute_accuracy, score_oracle
from base_models.oracle.fidelity import best_assignment, fidelity, parse_prompt
from base_models.oracle.model import AttributeOracle, default_vocab
from base_models.oracle.reading import OracleReading, images_to_tensor, read_images
from base_models.oracle.train import train_oracle

__all__ = [
    "ATTRIBUTES",
    "AttributeOracle",
    "OracleConfig",
    "OracleReading",
    "attribute_accuracy",
    "best_assignment",
    "default_vocab",
    "fidelity",
    "images_to_tensor",
    "parse_prompt",
    "read_images",
    "score_oracle",
    "train_oracle",
]
