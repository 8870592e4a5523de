"""`LoopConfig`: one file that describes the whole loop, with presets micro / quick / sd15.

Fields, by group:
- stages: presets (the trainer preset each stage runs with), overrides (extra arguments each
  stage's command gets: KEY=VALUE config overrides for trainers, --option=value for the rest);
- base models: train_base, oracle_test_n; or, with train_base false, model, clip, clip_kind,
  oracle (local folders the loop uses instead of training its own);
- labeling: prompts, n_prompts, prompt_seed, prompt_objects, k, kinds, overlap, label_steps,
  label_guidance, rater_profile, n_judgments, labels_db, human, poll_seconds, serve_host,
  serve_port;
- alignment and evaluation: rounds, aligner (ddpo | draft), also_align, dpo, eval_dpo,
  eval_suite, n_boot.
A YAML file (`--config FILE`, may name a `preset:`) and KEY=VALUE arguments override the preset;
`presets:` and `overrides:` mappings are merged stage by stage, and `STAGE.KEY=VALUE` on the
command line appends KEY=VALUE to that stage's overrides (e.g. `ddpo.epochs=10`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from base_models.config import BaseConfig, hfield, load_config, parse_overrides
from base_models.errors import ArtalignError
from base_models.io_utils import missing_path_error

# Stages whose command takes a trainer preset, and every stage that takes extra arguments.
PRESET_STAGES = ("data", "oracle", "clip", "vae", "generator", "reward", "ddpo", "draft", "dpo")
# Trainers the alignment stage of each round can run (`aligner`), by stage and folder name.
ALIGNERS = ("ddpo", "draft")
STAGES = (
    "data",
    "oracle_test",
    "oracle",
    "oracle_eval",
    "clip",
    "clip_eval",
    "vae",
    "generator",
    "generator_eval",
    "prompts",
    "labels",
    "label_sim",
    "label_agreement",
    "reward",
    "ddpo",
    "draft",
    "dpo",
    "eval",
    "eval_ddpo",
    "eval_draft",
    "eval_dpo",
)
DICT_FIELDS = ("presets", "overrides")
REPO_ROOT = Path(__file__).resolve().parents[2]

MICRO_EVAL = ["--n-prompts=2", "--seeds=1", "--n-two=1", "--n-heldout=1", "--steps=2"]


@dataclasses.dataclass
class LoopConfig(BaseConfig):
    """The whole loop: base models, labeling, reward, alignment, evaluation, rounds."""

    # stages
    presets: dict[str, str] = hfield(
        {s: "quick" for s in PRESET_STAGES},
        "Trainer preset per stage (data, oracle, clip, vae, generator, reward, ddpo, draft, dpo).",
    )
    overrides: dict[str, list[str]] = hfield(
        {},
        "Extra arguments per stage: KEY=VALUE config overrides for trainers, --option=value "
        "for the other commands (e.g. {ddpo: [epochs=10], eval: [--n-boot=200]}).",
    )
    # base models
    train_base: bool = hfield(
        True,
        "Train data set, oracle, CLIP, VAE and UNet here (false: use "
        "the local folders in model / clip / oracle).",
    )
    oracle_test_n: int = hfield(2000, "Held-out images the oracle's accuracy is measured on.")
    model: str | None = hfield(None, "train_base false: the Stable Diffusion folder to align.")
    clip: str | None = hfield(
        None, "train_base false: the local CLIP folder (reward backbone, evaluation features)."
    )
    clip_kind: str = hfield(
        "artalign", "Reward backbone kind of `clip`: artalign | open_clip | transformers."
    )
    oracle: str | None = hfield(
        None,
        "train_base false: an attribute oracle folder (optional; "
        "simulated raters and fidelity need one).",
    )
    # labeling
    prompts: str | None = hfield(
        None,
        "Prompt file (one a line) to label and align on; default: n_prompts drawn from the world.",
    )
    n_prompts: int = hfield(40, "Prompts drawn from the world (`data prompts`) when no file.")
    prompt_seed: int = hfield(11, "Seed of the drawn prompts.")
    prompt_objects: str = hfield("1-2", "Objects per drawn prompt: a number or a range.")
    k: int = hfield(4, "Images per prompt in a labeling batch.")
    kinds: str = hfield("pair,rank", "Task kinds of a labeling batch: pair, rank or pair,rank.")
    overlap: int = hfield(3, "Raters per task.")
    label_steps: int = hfield(20, "DDIM steps of the labeling batch's images.")
    label_guidance: float = hfield(3.0, "Classifier-free guidance of the labeling batch's images.")
    rater_profile: str = hfield("configs/raters/default.yaml", "Simulated raters' profile (YAML).")
    n_judgments: int = hfield(
        100000, "Most simulated judgments per round (stops when the batch's work runs out)."
    )
    labels_db: str | None = hfield(
        None,
        "An existing label store to train on instead of "
        "labeling round 1 (e.g. people's judgments).",
    )
    human: bool = hfield(
        False,
        "People label: print the app's command and wait until the admin "
        "closes the batch (`artalign label close`).",
    )
    poll_seconds: float = hfield(10.0, "--human: seconds between looks at the batch's state.")
    serve_host: str = hfield("127.0.0.1", "--human: host in the printed `label serve` command.")
    serve_port: int = hfield(8501, "--human: port in the printed `label serve` command.")
    # alignment and evaluation
    rounds: int = hfield(
        1,
        "Label -> reward -> DDPO iterations; round r >= 2 labels the "
        "images of round r-1's aligned model and continues from its "
        "adapters.",
    )
    aligner: str = hfield(
        "ddpo",
        "Trainer of each round's alignment stage: ddpo (policy gradient) or draft (reward "
        "backpropagation, DRaFT-K); its adapters start the next round.",
    )
    also_align: list[str] = hfield(
        [],
        "Round 1 also runs these trainers (ddpo, draft) on the same reward model, beside "
        "`aligner`; each is evaluated against the base model and gets its row in the report.",
    )
    dpo: bool = hfield(True, "Also align with Diffusion-DPO on round 1's labels.")
    eval_dpo: bool = hfield(False, "Also evaluate the DPO adapters against the base model.")
    eval_suite: str = hfield("quick", "Evaluation suite: a bundled name or a YAML file.")
    n_boot: int = hfield(1000, "Bootstrap resamples per CI in the evaluation.")

    PRESETS = {
        "micro": {
            "presets": {s: "micro" for s in PRESET_STAGES},
            "overrides": {"data": ["n=64"], "generator_eval": MICRO_EVAL},
            "oracle_test_n": 32,
            "n_prompts": 6,
            "k": 3,
            "overlap": 2,
            "label_steps": 2,
            "eval_suite": "configs/loop/suite_micro.yaml",
            "n_boot": 50,
            "eval_dpo": True,
        },
        "quick": {
            # the reward benchmark's setup (README): frozen CLIP, MLP head, Plackett-Luce loss
            "overrides": {"reward": ["head=mlp", "loss=pl"]},
        },
        "sd15": {
            "presets": {"reward": "gpu", "ddpo": "sd15", "draft": "sd15", "dpo": "sd15"},
            "train_base": False,
            "clip_kind": "open_clip",
            "label_steps": 50,
            "label_guidance": 7.5,
            "eval_suite": "sd",
            "eval_dpo": True,
        },
    }

    def validate(self) -> LoopConfig:
        """Raise an ArtalignError naming the first bad value and its fix."""
        unknown = sorted(set(self.presets) - set(PRESET_STAGES))
        unknown += sorted(set(self.overrides) - set(STAGES))
        if unknown:
            raise ArtalignError(
                f"unknown stage(s) {', '.join(unknown)} in presets/overrides; "
                f"stages: {', '.join(STAGES)}"
            )
        for key, low in (
            ("rounds", 1),
            ("k", 2),
            ("overlap", 1),
            ("n_prompts", 3),
            ("oracle_test_n", 1),
            ("n_judgments", 1),
            ("n_boot", 10),
        ):
            if getattr(self, key) < low:
                raise ArtalignError(
                    f"config key '{key}' must be >= {low}, got {getattr(self, key)}"
                )
        if self.aligner not in ALIGNERS:
            raise ArtalignError(
                f"aligner must be one of {', '.join(ALIGNERS)}, got {self.aligner!r}"
            )
        for name in self.also_align:
            if name not in ALIGNERS or name == self.aligner:
                raise ArtalignError(
                    f"also_align holds {name!r}: use trainers of {', '.join(ALIGNERS)} other "
                    f"than aligner ({self.aligner})"
                )
        if not self.poll_seconds > 0:  # NaN too
            raise ArtalignError(f"poll_seconds must be > 0, got {self.poll_seconds}")
        if not self.train_base:
            for key in ("model", "clip", "prompts"):
                if not getattr(self, key):
                    raise ArtalignError(
                        f"train_base is false (preset sd15): set {key}=PATH, a local {_WHAT[key]}"
                    )
        needs_raters = not self.human and (self.labels_db is None or self.rounds > 1)
        if needs_raters and not (self.train_base or self.oracle):
            raise ArtalignError(
                "simulated raters read images with the attribute oracle, and "
                "there is none: pass --human (people label), or labels_db=STORE "
                "with rounds=1, or oracle=DIR"
            )
        for key in ("model", "clip", "oracle", "prompts", "labels_db"):
            value = getattr(self, key)
            if value and not Path(value).exists():
                raise missing_path_error(value, f"{key}={value}")
        return self

    def preset_of(self, stage: str) -> str | None:
        return self.presets.get(stage)

    def args_of(self, stage: str) -> list[str]:
        return list(self.overrides.get(stage, []))


_WHAT = {
    "model": "Stable Diffusion folder",
    "clip": "CLIP folder",
    "prompts": "prompt file (one prompt a line)",
}


def resolve_file(path: str) -> str:
    """An existing file as an absolute path; else the repository's file of that relative name
    (configs/...) when there is one; else `path` unchanged (e.g. a bundled suite's name)."""
    p = Path(path)
    if p.exists():
        return str(p.resolve())
    if not p.is_absolute() and (REPO_ROOT / p).exists():
        return str(REPO_ROOT / p)
    return path


def _read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(resolve_file(str(path)))
    if not p.is_file():
        raise ArtalignError(f"config file {path} does not exist; pass an existing YAML file")
    try:
        values = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ArtalignError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise ArtalignError(f"config file {path} must hold a mapping of key: value")
    return values


def _merge_dicts(cfg: LoopConfig, values: dict[str, Any], source: str) -> None:
    for key in DICT_FIELDS:
        update = values.pop(key, None)
        if update is None:
            continue
        if not isinstance(update, dict):
            raise ArtalignError(f"'{key}' in {source} must be a mapping of stage: value")
        merged = dict(getattr(cfg, key))
        for stage, value in update.items():
            if key == "overrides":
                value = [str(v) for v in value] if isinstance(value, list) else [str(value)]
            merged[str(stage)] = value
        setattr(cfg, key, merged)


def load_loop_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
) -> LoopConfig:
    """Resolve a loop config: preset (default quick) -> YAML file -> KEY=VALUE arguments.

    `presets` / `overrides` mappings merge per stage; `STAGE.KEY=VALUE` arguments append
    KEY=VALUE to that stage's overrides.
    """
    file_values = _read_yaml(config_file) if config_file is not None else {}
    file_preset = file_values.pop("preset", None)
    preset = preset or file_preset or "quick"
    cli = parse_overrides(overrides)
    per_stage = {k: v for k, v in cli.items() if "." in k}
    scalars = {k: v for k, v in file_values.items() if k not in DICT_FIELDS}
    scalars.update({k: v for k, v in cli.items() if "." not in k})
    if any(k in DICT_FIELDS for k in scalars):
        raise ArtalignError("set presets/overrides in a YAML file or as STAGE.KEY=VALUE")
    cfg = load_config(LoopConfig, preset, None, scalars)
    cfg.presets = {**LoopConfig().presets, **cfg.presets}  # a preset names only what it changes
    _merge_dicts(
        cfg, {k: file_values[k] for k in DICT_FIELDS if k in file_values}, str(config_file)
    )
    extra = dict(cfg.overrides)
    for key, value in per_stage.items():
        stage, _, name = key.partition(".")
        extra[stage] = [*extra.get(stage, []), f"{name}={value}"]
    cfg.overrides = extra
    cfg.rater_profile = resolve_file(cfg.rater_profile)
    cfg.eval_suite = resolve_file(cfg.eval_suite)
    return cfg.validate()
