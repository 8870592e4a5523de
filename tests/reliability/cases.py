"""The bad-input corpus: one row per case, run by test_bad_input.py through `artalign`'s `main`.

Each row: Case(id, group, kind, argv, expect). `argv` is split like a shell line; "{name}" is an
input of fixtures.py (read-only), or a fresh path of the case's own empty folder: "{out}" (a
folder), "{out_file}" (a file), "{new_db}" (a store). `expect` is a substring of the one-line
error (the problem). Kinds: path (missing, unreadable or wrong-kind paths), corrupt (broken
files), number (nonsense numbers), hub (a hub id where a local path is expected, offline),
existing-output (an output that already holds another run), usage (an option click refuses:
unknown, missing, or of the wrong type). To add a case, add a line.
"""

# ruff: noqa: E501  (a case is one line, however long)
from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from base_models.cli_main import GROUP_ORDER

GROUPS = GROUP_ORDER  # every command group of `artalign`
KINDS = ("path", "corrupt", "number", "hub", "existing-output", "usage")
HUB = "stabilityai/sd-turbo"
GEN = "generate --model {sd} --out {out} --prompt 'a red circle' --steps 2"


class Case(NamedTuple):
    id: str
    group: str
    kind: str
    argv: str
    expect: str


# fmt: off
CASES = [
    # data
    Case('data-check-missing', 'data', 'path', 'data check --data {missing}', 'does not exist'),
    Case('data-check-empty-dir', 'data', 'path', 'data check --data {empty_dir}', 'empty_dir'),
    Case('data-check-trunc-png', 'data', 'corrupt', 'data check --data {trunc_png_data}', '.png'),
    Case('data-check-fake-png', 'data', 'corrupt', 'data check --data {fake_png_data}', '.png'),
    Case('data-check-bad-jsonl', 'data', 'corrupt', 'data check --data {bad_jsonl_data}', 'line 4'),
    Case('data-check-parquet', 'data', 'corrupt', 'data check --data {bad_parquet}', 'column'),
    Case('data-make-n-zero', 'data', 'number', 'data make --out {out} --n 0', 'n must be >= 1'),
    Case('data-make-seed', 'data', 'number', 'data make --out {out} --seed -1', 'seed'),
    Case('data-make-yaml-key', 'data', 'corrupt', 'data make --out {out} --config {yaml_unknown}', 'no_such_key'),
    Case('data-make-yaml-type', 'data', 'corrupt', 'data make --out {out} --config {yaml_wrong_type}', 'seed'),
    Case('data-make-out-file', 'data', 'path', 'data make --out {a_file} --n 2', 'a_file.txt'),
    Case('data-make-existing', 'data', 'existing-output', 'data make --out {other_run} --n 2', '--overwrite'),
    Case('data-prompts-n-zero', 'data', 'number', 'data prompts --out {out_file} --n 0', 'n must be'),
    Case('data-preview-n-zero', 'data', 'number', 'data preview --data {data} --out {out_file} --n 0', '--n'),
    Case('data-preview-scale-zero', 'data', 'number', 'data preview --data {data} --out {out_file} --scale 0', '--scale'),
    # oracle
    Case('oracle-score-vae', 'oracle', 'path', 'oracle score --model {vae} --data {data} --out {out}', 'oracle'),
    Case('oracle-score-missing', 'oracle', 'path', 'oracle score --model {missing} --data {data} --out {out}', 'does_not_exist'),
    Case('oracle-train-epochs', 'oracle', 'number', 'oracle train --out {out} epochs=0', 'epochs'),
    Case('oracle-train-batch', 'oracle', 'number', 'oracle train --out {out} batch_size=-4', 'batch_size'),
    Case('oracle-train-yaml', 'oracle', 'corrupt', 'oracle train --out {out} --config {yaml_unknown}', 'no_such_key'),
    Case('oracle-calibrate-n', 'oracle', 'number', 'oracle calibrate --model {oracle} --generator {sd} --out {out} --n 0', '--n'),
    Case('oracle-calibrate-hub', 'oracle', 'hub', f'oracle calibrate --model {{oracle}} --generator {HUB} --out {{out}} --n 4', 'stabilityai/sd-turbo\' looks like a hub id'),
    # base
    Case('base-clip-empty', 'base', 'path', 'base train-clip --data {empty_dir} --out {out} --preset micro', 'empty_dir'),
    Case('base-clip-steps', 'base', 'number', 'base train-clip --data {data} --out {out} --preset micro max_steps=-1', 'max_steps'),
    Case('base-vae-trunc', 'base', 'corrupt', 'base train-vae --data {trunc_png_data} --out {out} --preset micro', '.png'),
    Case('base-vae-batch', 'base', 'number', 'base train-vae --data {data} --out {out} --preset micro batch_size=0', 'batch_size'),
    Case('base-unet-clip-as-vae', 'base', 'path', 'base train-unet --data {data} --vae {clip} --clip {clip} --out {out} --preset micro', 'vae'),
    Case('base-eval-clip-vae', 'base', 'path', 'base eval-clip --model {vae} --out {out}', 'vae'),
    Case('base-evalgen-missing-part', 'base', 'corrupt', 'base eval-generator --model {sd_missing_unet} --oracle {oracle} --out {out}', 'unet'),
    Case('base-evalgen-steps', 'base', 'number', 'base eval-generator --model {sd} --oracle {oracle} --out {out} --steps 0', 'steps'),
    Case('base-finetune-hub', 'base', 'hub', f'base finetune-style --method lora --model {HUB} --data {{data}} --out {{out}}', 'stabilityai/sd-turbo\' looks like a hub id'),
    # generate
    Case('gen-vae-as-model', 'generate', 'path', "generate --model {vae} --out {out} --prompt 'a red circle'", 'vae'),
    Case('gen-corrupt-weights', 'generate', 'corrupt', "generate --model {sd_corrupt} --out {out} --prompt 'a red circle' --steps 2", 'safetensors'),
    Case('gen-missing-part', 'generate', 'corrupt', "generate --model {sd_missing_unet} --out {out} --prompt 'a red circle' --steps 2", 'unet'),
    Case('gen-hub', 'generate', 'hub', f'generate --model {HUB} --out {{out}} --prompt x', 'stabilityai/sd-turbo\' looks like a hub id'),
    Case('gen-empty-prompts', 'generate', 'corrupt', 'generate --model {sd} --out {out} --prompts {empty_prompts}', 'no prompts'),
    Case('gen-long-prompt', 'generate', 'corrupt', 'generate --model {sd} --out {out} --prompts {long_prompts} --steps 2', 'token'),
    Case('gen-steps-zero', 'generate', 'number', "generate --model {sd} --out {out} --prompt 'a red circle' --steps 0", 'steps'),
    Case('gen-guidance-nan', 'generate', 'number', "generate --model {sd} --out {out} --prompt 'a red circle' --steps 2 --guidance nan", 'guidance'),
    Case('gen-seed-negative', 'generate', 'number', "generate --model {sd} --out {out} --prompt 'a red circle' --steps 2 --seed -1", 'seed'),
    Case('gen-batch-zero', 'generate', 'number', "generate --model {sd} --out {out} --prompt 'a red circle' --steps 2 --batch-size 0", 'batch'),
    Case('gen-existing', 'generate', 'existing-output', 'generate --model {sd} --out {other_run} --prompt x --steps 2', '--overwrite'),
    # label
    Case('label-status-not-store', 'label', 'corrupt', 'label status --db {not_store}', 'not a label store'),
    Case('label-status-newer', 'label', 'corrupt', 'label status --db {newer_store}', 'schema version'),
    Case('label-status-missing', 'label', 'path', 'label status --db {new_db}', 'new.db'),
    Case('label-batch-k-zero', 'label', 'number', 'label batch --db {new_db} --prompts {prompts} --procedural --k 0', '--k'),
    Case('label-batch-overlap', 'label', 'number', 'label batch --db {new_db} --prompts {prompts} --procedural --overlap 0', '--overlap'),
    Case('label-simulate-n-zero', 'label', 'number', 'label simulate --db {store} --profile configs/raters/default.yaml --oracle {oracle} --n 0', '--n'),
    Case('label-simulate-overlap', 'label', 'number', 'label simulate --db {wide_store} --profile {two_raters} --oracle {oracle} --n 5', 'n_raters'),
    Case('label-import-parquet', 'label', 'corrupt', 'label import --db {store} --in {bad_parquet}', 'column'),
    Case('label-export-existing', 'label', 'existing-output', 'label export --db {store} --out {other_run}/manifest.jsonl', '--overwrite'),
    # reward
    Case('reward-train-parquet', 'reward', 'corrupt', 'reward train --data {bad_parquet} --out {out} --preset micro', 'column'),
    Case('reward-train-not-store', 'reward', 'corrupt', 'reward train --data {not_store} --out {out} --preset micro', 'not a label store'),
    Case('reward-train-batch', 'reward', 'number', 'reward train --data {store} --out {out} --preset micro batch_size=0', 'batch_size'),
    Case('reward-score-vae', 'reward', 'path', 'reward score --model {vae} --images {data} --out {out_file}', 'vae'),
    Case('reward-train-existing', 'reward', 'existing-output', 'reward train --data {store} --out {other_run} --preset micro', 'holds no reward model'),
    # align
    Case('align-ddpo-vae', 'align', 'path', 'align ddpo --out {out} --preset micro --model {vae} --prompts {prompts} --reward brightness', 'vae'),
    Case('align-ddpo-hub', 'align', 'hub', f'align ddpo --out {{out}} --preset micro --model {HUB} --prompts {{prompts}} --reward brightness', 'stabilityai/sd-turbo\' looks like a hub id'),
    Case('align-ddpo-steps', 'align', 'number', 'align ddpo --out {out} --preset micro --model {sd} --prompts {prompts} --reward brightness steps=0', 'steps'),
    Case('align-dpo-parquet', 'align', 'corrupt', 'align dpo --out {out} --preset micro --model {sd} --pairs {bad_parquet}', 'column'),
    Case('align-dpo-newer', 'align', 'corrupt', 'align dpo --out {out} --preset micro --model {sd} --db {newer_store}', 'schema version'),
    Case('align-dpo-existing', 'align', 'existing-output', 'align dpo --out {other_run} --preset micro --model {sd} --db {store}', '--resume'),
    # prompt
    Case('prompt-rewrite-missing', 'prompt', 'path', 'prompt rewrite x --model {missing}', 'does_not_exist'),
    Case('prompt-rewrite-vae', 'prompt', 'path', 'prompt rewrite x --model {vae}', 'vae'),
    Case('prompt-rewrite-candidates', 'prompt', 'number', 'prompt rewrite x --model {missing} --candidates 0', '--candidates'),
    Case('prompt-train-empty-data', 'prompt', 'path', 'prompt train --out {out} --preset micro --data {empty_dir} --generator {sd}', 'empty_dir'),
    Case('prompt-train-hub', 'prompt', 'hub', f'prompt train --out {{out}} --preset micro --data {{data}} --generator {HUB}', 'stabilityai/sd-turbo\' looks like a hub id'),
    # eval
    Case('eval-run-vae', 'eval', 'path', 'eval run --model {vae} --out {out}', 'vae'),
    Case('eval-run-hub', 'eval', 'hub', f'eval run --model {HUB} --out {{out}}', 'stabilityai/sd-turbo\' looks like a hub id'),
    Case('eval-run-suite-yaml', 'eval', 'corrupt', 'eval run --model {sd} --out {out} --suite {yaml_unknown}', 'no_such_key'),
    Case('eval-run-seed', 'eval', 'number', 'eval run --model {sd} --out {out} --seed -5', 'seed'),
    Case('eval-run-existing', 'eval', 'existing-output', 'eval run --model {sd} --out {other_run}', '--overwrite'),
    Case('eval-compare-missing', 'eval', 'path', 'eval compare {missing} {other_run} --out {out}', 'does_not_exist'),
    # loop
    Case('loop-yaml-key', 'loop', 'corrupt', 'loop --out {out} --config {yaml_unknown}', 'no_such_key'),
    Case('loop-yaml-type', 'loop', 'corrupt', 'loop --out {out} --config {loop_wrong_type}', 'rounds'),
    Case('loop-model-hub', 'loop', 'hub', f'loop --out {{out}} --preset micro model={HUB}', 'stabilityai/sd-turbo\' looks like a hub id'),
    Case('loop-rounds-zero', 'loop', 'number', 'loop --out {out} --rounds 0', 'rounds'),
    Case('loop-poll-nan', 'loop', 'number', 'loop --out {out} --human --poll-seconds nan', 'poll'),
    Case('loop-out-file', 'loop', 'path', 'loop --out {a_file} --preset micro', 'a_file.txt'),
    Case('loop-existing', 'loop', 'existing-output', 'loop --out {other_run} --preset micro', "not an artalign loop's"),
    # usage (click's own errors, in one line)
    Case('usage-steps-not-int', 'generate', 'usage', "generate --model {sd} --out {out} --prompt 'a red circle' --steps abc", "'--steps'"),
    Case('usage-missing-option', 'reward', 'usage', 'reward train --out {out}', "Missing option '--data'"),
    Case('usage-unknown-flag', 'data', 'usage', 'data make --out {out} --no-such-flag', 'No such option: --no-such-flag'),
]
# fmt: on


def counts_by_kind(cases: list[Case] = CASES) -> dict[str, int]:
    """Number of cases of each kind, in KINDS order."""
    found = Counter(c.kind for c in cases)
    return {kind: found[kind] for kind in KINDS}


def counts_by_group(cases: list[Case] = CASES) -> dict[str, int]:
    """Number of cases of each command group, in GROUPS order."""
    found = Counter(c.group for c in cases)
    return {group: found[group] for group in GROUPS}
