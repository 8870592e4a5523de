"""`train_reward`: fit a reward model on preference judgments.

The loop: split the data by prompt (train / val / test), fit the rater policy (kappa flags and
weights, `rlhf.reward.data.training_rater_policy`) on the training split only and apply it to all
three, build backbone + head, then per epoch shuffle the training judgments, score each batch's
images against its prompts, take the Bradley-Terry loss (pairs and rankings' implied pairs; ties
0.5/0.5) or the Plackett-Luce loss (rankings whole, pairs as 2-rankings, which is the same as BT),
step AdamW, and measure validation pairwise accuracy. The best epoch by validation accuracy is kept
(epoch 0, the untrained model, competes too: for the pickscore head it is the backbone's zero-shot
CLIP score); training stops after `patience` epochs without improvement. In frozen mode with
`cache_features` every image and prompt is embedded once, so an epoch costs only the head (fast on
a CPU); otherwise decoded, preprocessed images are kept in memory up to PIXEL_CACHE_BYTES.

Out folder (built in a temporary folder beside it, then renamed in, so it is never half-written):
    reward.safetensors + reward_config.json   the model (see model.py)
    train_config.yaml                         the resolved RewardConfig
    split.json                                the prompts of each split (for `reward eval`;
                                              train: all its prompts, sampled or not)
    train_log.jsonl                           one line per epoch: loss, val loss and accuracy
    metrics.json                              best epoch, accuracies, counts, timings
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from base_models.errors import ArtalignError
from base_models.io_utils import replace_dir, write_json
from base_models.train_utils import make_accelerator
from rlhf.reward.config import RewardConfig
from rlhf.reward.data import PreferenceData, split_by_prompt, training_rater_policy
from rlhf.reward.losses import bradley_terry_loss, plackett_luce_loss
from rlhf.reward.model import CONFIG_FILE, RewardModel, build_reward_model

Log = Callable[[str], None]
PIXEL_CACHE_BYTES = 2 * 1024**3  # keep preprocessed images in memory below this total


class Units:
    """Judgments as padded tensors: prompt (n,), images (n, K), ranks (n, K) or p_a (n,), w (n,).

    For loss "bt" every unit is a pair (K = 2, label p_a); for "pl" a ranking (pairs become
    2-rankings; ranks 0 pad shorter rankings).
    """

    def __init__(self, data: PreferenceData, loss: str, prompt_index: dict[str, int]) -> None:
        self.loss = loss
        if loss == "bt":
            pairs = data.all_pairs()
            self.prompt = torch.tensor([prompt_index[p.prompt] for p in pairs], dtype=torch.long)
            self.images = torch.tensor([[p.image_a, p.image_b] for p in pairs], dtype=torch.long)
            self.label = torch.tensor([p.p_a for p in pairs], dtype=torch.float32)
            self.weight = torch.tensor([p.weight for p in pairs], dtype=torch.float32)
        else:
            rows = [(r.prompt, list(r.images), list(r.ranks), r.weight) for r in data.rankings]
            for p in data.pairs:
                ranks = [1, 2] if p.p_a == 1 else [2, 1] if p.p_a == 0 else [1, 1]
                rows.append((p.prompt, [p.image_a, p.image_b], ranks, p.weight))
            k = max((len(r[1]) for r in rows), default=2)
            self.prompt = torch.tensor([prompt_index[r[0]] for r in rows], dtype=torch.long)
            self.images = torch.tensor(
                [r[1] + [r[1][0]] * (k - len(r[1])) for r in rows], dtype=torch.long
            ).view(-1, k)
            self.label = torch.tensor(
                [r[2] + [0] * (k - len(r[2])) for r in rows], dtype=torch.long
            ).view(-1, k)
            self.weight = torch.tensor([r[3] for r in rows], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.prompt)

    def loss_of(self, scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The loss of units `idx` given their scores (b, K)."""
        w = self.weight[idx].to(scores.device)
        if self.loss == "bt":
            return bradley_terry_loss(scores[:, 0], scores[:, 1], self.label[idx], w)
        return plackett_luce_loss(scores, self.label[idx], w)


class Features:
    """Image and text embeddings for the loop: cached once (frozen) or computed with grad."""

    def __init__(
        self,
        model: RewardModel,
        data: PreferenceData,
        prompts: list[str],
        cfg: RewardConfig,
        autocast: Callable,
    ) -> None:
        self.model, self.data, self.cfg, self.autocast = model, data, cfg, autocast
        self.cached = cfg.mode == "frozen" and cfg.cache_features
        self.tokens = model.backbone.tokenize(prompts)
        self.pixels: dict[int, torch.Tensor] = {}
        size = model.backbone.image_size
        self.keep_pixels = len(data.used_images()) * 3 * size * size * 4 <= PIXEL_CACHE_BYTES
        if self.cached:
            with torch.no_grad():
                self.txt = self._embed_texts(torch.arange(len(prompts)))
                used = data.used_images()
                self.img = torch.zeros(len(data.images), model.backbone.embed_dim)
                for s in range(0, len(used), cfg.eval_batch_size):
                    chunk = torch.tensor(used[s : s + cfg.eval_batch_size])
                    self.img[chunk] = self._embed_images(chunk).cpu()
                self.img = self.img.to(model.device)
            self.pixels.clear()

    def _pixels(self, idx: torch.Tensor) -> torch.Tensor:
        ids = idx.tolist()
        if not self.keep_pixels:
            return self.model.backbone.preprocess([self.data.load_image(i) for i in ids])
        missing = [i for i in ids if i not in self.pixels]
        if missing:
            images = [self.data.load_image(i) for i in missing]
            for i, px in zip(missing, self.model.backbone.preprocess(images), strict=True):
                self.pixels[i] = px
        return torch.stack([self.pixels[i] for i in ids])

    def _embed_images(self, idx: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.model.embed_images(self._pixels(idx)).float()

    def _embed_texts(self, idx: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.model.embed_texts({k: v[idx] for k, v in self.tokens.items()}).float()

    def tables(self, units: Units) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of every image and prompt `units` use, indexable by their ids (no grad)."""
        if self.cached:
            return self.img, self.txt
        with torch.no_grad():
            img = torch.zeros(
                len(self.data.images), self.model.backbone.embed_dim, device=self.model.device
            )
            used = units.images.unique()
            for s in range(0, len(used), self.cfg.eval_batch_size):
                chunk = used[s : s + self.cfg.eval_batch_size]
                img[chunk.to(img.device)] = self._embed_images(chunk)
            txt = self._embed_texts(torch.arange(len(self.tokens["input_ids"])))
        return img, txt

    def scores(
        self,
        prompt: torch.Tensor,
        images: torch.Tensor,
        tables: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Scores (b, K) of images (b, K) against prompts (b,), from `tables` when given."""
        if tables is not None or self.cached:
            img_t, txt_t = tables if tables is not None else (self.img, self.txt)
            img = img_t[images.to(img_t.device)]  # (b, K, D)
            txt = txt_t[prompt.to(txt_t.device)]  # (b, D)
        else:
            uniq_i, inv_i = images.unique(return_inverse=True)
            uniq_p, inv_p = prompt.unique(return_inverse=True)
            img = self._embed_images(uniq_i)[inv_i.to(self.model.device)]
            txt = self._embed_texts(uniq_p)[inv_p.to(self.model.device)]
        b, k = images.shape
        with self.autocast():
            flat = self.model.head_scores(img.reshape(b * k, -1), txt.repeat_interleave(k, 0))
        return flat.float().view(b, k)


@torch.no_grad()
def pair_metrics(feats: Features, units: Units, batch: int) -> dict[str, float | None]:
    """Loss and accuracy over BT units: accuracy on non-tied labels, equal scores half credit."""
    if len(units) == 0:
        return {"loss": None, "accuracy": None}
    tables = feats.tables(units)  # each image embedded once
    total, correct, decided = 0.0, 0.0, 0
    for s in range(0, len(units), batch):
        idx = torch.arange(s, min(s + batch, len(units)))
        scores = feats.scores(units.prompt[idx], units.images[idx], tables)
        total += float(units.loss_of(scores, idx)) * len(idx)
        d, p = (scores[:, 0] - scores[:, 1]).cpu(), units.label[idx]
        mask = p != 0.5
        hit = torch.where(d == 0, 0.5, ((d > 0) == (p > 0.5)).float())
        correct += float(hit[mask].sum())
        decided += int(mask.sum())
    return {"loss": total / len(units), "accuracy": correct / decided if decided else None}


@torch.no_grad()
def calibrate_scale(
    model: RewardModel, feats: Features, units: Units, batch: int
) -> tuple[float, float]:
    """Set the head's logit scale to the one that fits the training pairs best (temperature
    scaling of the untrained score). A CLIP's own scale (up to 100) makes confident, noisy
    preferences cost so much that the first steps tear the zero-shot ordering apart; the
    calibrated scale keeps the ordering and starts training from a sensible loss.
    """
    head = model.head
    before = float(head.logit_scale.exp())
    if len(units) == 0:
        return before, before
    tables = feats.tables(units)
    diffs = []
    for idx in torch.arange(len(units)).split(batch):
        scores = feats.scores(units.prompt[idx], units.images[idx], tables)
        diffs.append((scores[:, 0] - scores[:, 1]).cpu())
    d = torch.cat(diffs).double()
    p, w = units.label.double(), units.weight.double()
    log_m = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_m], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        with torch.enable_grad():
            loss = bradley_terry_loss(d * log_m.exp(), torch.zeros_like(d), p, w)
            loss.backward()
        return loss

    opt.step(closure)
    after = min(100.0, max(0.01, before * float(log_m.exp())))
    head.logit_scale.fill_(math.log(after))
    return before, after


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ArtalignError(f"--out {out} is a file; pass a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / CONFIG_FILE).is_file():
        raise ArtalignError(
            f"--out {out} is a non-empty folder that holds no reward model; pick a new folder "
            "(an old reward model there is replaced)"
        )


def _optimizer(model: RewardModel, cfg: RewardConfig) -> torch.optim.Optimizer:
    groups = []
    for params, lr in (
        (list(model.head.named_parameters()), cfg.lr),
        (list(model.backbone.named_parameters()), cfg.backbone_lr),
    ):
        params = [(n, p) for n, p in params if p.requires_grad]
        decay = [p for n, p in params if p.ndim >= 2 and "lora_" not in n]
        other = [p for n, p in params if not (p.ndim >= 2 and "lora_" not in n)]
        groups += [
            {"params": decay, "lr": lr, "weight_decay": cfg.weight_decay},
            {"params": other, "lr": lr, "weight_decay": 0.0},
        ]
    return torch.optim.AdamW([g for g in groups if g["params"]])


def _fit(
    model: RewardModel,
    feats: Features,
    units: Units,
    val_units: Units,
    cfg: RewardConfig,
    accelerator: Any,
    log: Log,
) -> tuple[list[dict[str, Any]], int, dict[str, torch.Tensor]]:
    """The epochs: (history, best epoch, its trained weights). Epoch 0 is the untrained model."""
    opt = _optimizer(model, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, Any]] = []
    best: float | None = None
    best_state, best_epoch, stale = None, 0, 0
    if len(val_units):  # the untrained model (for pickscore: the zero-shot CLIP score) competes
        model.eval()
        best = pair_metrics(feats, val_units, cfg.eval_batch_size)["accuracy"]
        best_state = {k: v.detach().clone() for k, v in model.trained_state().items()}
        log(f"epoch 0 (untrained): val accuracy {'n/a' if best is None else f'{best:.4f}'}")
    for epoch in range(1, cfg.epochs + 1):
        t_epoch = time.perf_counter()
        model.train()
        order, losses = torch.randperm(len(units), generator=gen), []
        for s in range(0, len(units), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            loss = units.loss_of(feats.scores(units.prompt[idx], units.images[idx]), idx)
            opt.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            opt.step()
            losses.append(float(loss.detach()))
        model.eval()
        m = pair_metrics(feats, val_units, cfg.eval_batch_size)
        row = {
            "epoch": epoch,
            "train_loss": sum(losses) / len(losses),
            "val_loss": m["loss"],
            "val_accuracy": m["accuracy"],
            "seconds": time.perf_counter() - t_epoch,
        }
        history.append(row)
        acc_text = "n/a" if m["accuracy"] is None else f"{m['accuracy']:.4f}"
        log(f"epoch {epoch}: train loss {row['train_loss']:.4f}, val accuracy {acc_text}")
        # better: a higher val accuracy; without validation data, a lower training loss
        key = m["accuracy"] if m["accuracy"] is not None else -row["train_loss"]
        if best is None or key > best:
            best, best_epoch, stale = key, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.trained_state().items()}
        else:
            stale += 1
            if cfg.patience and stale >= cfg.patience:
                log(f"no better val accuracy for {stale} epochs: stopping")
                break
    return history, best_epoch, best_state


def train_reward(
    cfg: RewardConfig,
    data: PreferenceData,
    out: str | Path,
    log: Log | None = None,
    choose: Callable[[PreferenceData], PreferenceData] | None = None,
) -> RewardModel:
    """Train a reward model on `data` and save it in `out`; return it (best epoch, eval mode).

    `choose(train)` picks the training judgments from the training split (active selection;
    default: `cfg.train_fraction` of them at random); validation and test are left whole.
    """
    log = log or (lambda _msg: None)
    cfg.validate()
    data.check()
    out = Path(out)
    _check_out(out)
    train, val, test = split_by_prompt(data, cfg.val_frac, cfg.test_frac, cfg.seed)
    split = (train, val, test)  # every prompt of each split, for split.json
    policy = training_rater_policy(cfg, data, train, log)
    if choose is not None:
        train = choose(train)
    elif cfg.train_fraction < 1:
        train = train.sample(cfg.train_fraction, cfg.seed)
    if policy is not None:
        train, val, test = (policy.apply(s) for s in (train, val, test))
    train.check()
    accelerator = make_accelerator(cfg.mixed_precision)
    if accelerator.num_processes > 1:
        raise ArtalignError(
            "reward training runs in one process; start it without a "
            "multi-process `accelerate launch`"
        )
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    lora = {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout}
    model = build_reward_model(
        cfg.backbone,
        cfg.backbone_kind,
        cfg.pretrained,
        cfg.head,
        cfg.mode,
        cfg.mlp_hidden,
        cfg.dropout,
        lora,
        accelerator.device,
    )
    fit = train.with_judgments(train.pairs + val.pairs, train.rankings + val.rankings)
    prompts = fit.prompts()
    where = {p: i for i, p in enumerate(prompts)}
    units, val_units = Units(train, cfg.loss, where), Units(val, "bt", where)
    feats = Features(model, fit, prompts, cfg, accelerator.autocast)
    feature_seconds = time.perf_counter() - t0
    log(
        f"{len(units)} training units, {len(val_units)} validation pairs; "
        f"{model.mode} {model.head_kind} head ({feature_seconds:.1f}s to set up)"
    )
    if cfg.calibrate_scale and hasattr(model.head, "logit_scale"):
        before, after = calibrate_scale(
            model, feats, Units(train, "bt", where), cfg.eval_batch_size
        )
        log(f"logit scale calibrated on the training pairs: {before:.2f} -> {after:.2f}")
    history, best_epoch, best_state = _fit(model, feats, units, val_units, cfg, accelerator, log)
    model.load_state_dict({_module_key(k): v for k, v in best_state.items()}, strict=False)
    model.eval()
    train_m = pair_metrics(feats, Units(train, "bt", where), cfg.eval_batch_size)
    val_m = pair_metrics(feats, val_units, cfg.eval_batch_size)
    seconds = time.perf_counter() - t0
    metrics = {
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stopped_early": len(history) < cfg.epochs,
        "val_accuracy": val_m["accuracy"],
        "val_loss": val_m["loss"],
        "train_accuracy": train_m["accuracy"],
        "train_loss": train_m["loss"],
        "seconds": seconds,
        "feature_seconds": feature_seconds,
        "data": {
            "all": data.summary(),
            "train": train.summary(),
            "val": val.summary(),
            "test": test.summary(),
            "excluded_raters": train.source.get("excluded_raters") or [],
            "rater_weights": train.source.get("rater_weights"),
            "rater_policy_fit_prompts": train.source.get("rater_policy_fit_prompts"),
        },
        "history": history,
    }
    model.meta = {
        "training": cfg.to_dict(),
        "data": _provenance(train, cfg),
        "metrics": {k: metrics[k] for k in ("best_epoch", "val_accuracy", "train_accuracy")},
    }
    if accelerator.is_main_process:
        _save(model, cfg, out, metrics, history, split)
    log(f"best epoch {best_epoch}: val accuracy {val_m['accuracy']}, {seconds:.1f}s -> {out}")
    return model


def _module_key(key: str) -> str:
    """trained_state keys ("backbone.X") -> RewardModel.state_dict keys ("backbone.model.X")."""
    return f"backbone.model.{key.removeprefix('backbone.')}" if key.startswith("backbone.") else key


def _provenance(data: PreferenceData, cfg: RewardConfig) -> dict[str, Any]:
    src = {k: v for k, v in data.source.items() if k != "rater_weights"}
    return {
        **src,
        "split": {"val_frac": cfg.val_frac, "test_frac": cfg.test_frac, "seed": cfg.seed},
    }


def _save(
    model: RewardModel,
    cfg: RewardConfig,
    out: Path,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    splits: tuple[PreferenceData, ...],
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(0o755)
        model.save(tmp)  # a sibling of `out`: the backbone's relative path holds for both
        cfg.save_yaml(tmp / "train_config.yaml")
        names = ("train", "val", "test")
        write_json(
            tmp / "split.json",
            {
                "seed": cfg.seed,
                "val_frac": cfg.val_frac,
                "test_frac": cfg.test_frac,
                **{f"{n}_prompts": s.prompts() for n, s in zip(names, splits, strict=True)},
            },
        )
        (tmp / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
        write_json(tmp / "metrics.json", metrics)
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
