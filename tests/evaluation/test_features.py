"""Feature extractors (clip, open_clip, inception) and the content-keyed feature cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from base_models.errors import ArtalignError
from evaluation.context import EvalContext
from evaluation.feature_cache import FeatureCache, images_key, reference_features
from evaluation.features import (
    InceptionFeatures,
    extract,
    inception_features,
    module_fingerprint,
)
from evaluation.registry import get_extractor


def _images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


class Counting(torch.nn.Module):
    """A fixed random projection of mean-pooled pixels that counts its calls."""

    def __init__(self, dim: int = 4, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.nn.Parameter(torch.randn(3 * 4 * 4, dim, generator=g), False)
        self.num_features = dim
        self.fingerprint = module_fingerprint(self, {"pool": 4})
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1) @ self.proj


# ----------------------------------------------------------------------------- extractors


def test_clip_extractor_gives_n_by_d_and_a_fingerprint(micro_clip):
    from base_models.clip.features import ClipImageFeatures

    ctx = EvalContext(clip_path=micro_clip)
    net = get_extractor("clip")(ctx)
    images = _images(5)
    feats = extract(net, images, batch_size=2)
    assert feats.shape == (5, 32) and feats.dtype == torch.float64
    assert net.num_features == 32
    assert len(net.fingerprint) == 64 and int(net.fingerprint, 16) >= 0
    direct = ClipImageFeatures.from_folder(micro_clip)(images).double()
    torch.testing.assert_close(feats, direct, rtol=1e-5, atol=1e-6)
    assert feats.std(dim=0).min() > 0  # different images, different features
    # other sizes are resized to the tower's input; batches may come as an iterable
    small = _images(3, size=16)
    assert extract(net, small).shape == (3, 32)
    batched = extract(net, iter([images[:2], images[2:]]))
    torch.testing.assert_close(batched, feats, rtol=1e-5, atol=1e-6)


def test_clip_extractor_without_a_clip_names_the_flag():
    with pytest.raises(ArtalignError, match="--clip DIR"):
        get_extractor("clip")(EvalContext())


def test_open_clip_by_folder_or_config_name_with_local_weights(micro_clip):
    ctx = EvalContext()
    by_folder = get_extractor("open_clip")(ctx, model=micro_clip)
    by_name = get_extractor("open_clip")(
        ctx, model="artalign-micro", pretrained=micro_clip / "open_clip_model.safetensors"
    )
    images = _images(4, seed=1)
    torch.testing.assert_close(extract(by_folder, images), extract(by_name, images))
    assert by_folder.fingerprint == by_name.fingerprint
    with pytest.raises(ArtalignError, match="model=DIR"):
        get_extractor("open_clip")(ctx)
    with pytest.raises(ArtalignError, match="pretrained"):
        get_extractor("open_clip")(ctx, model="artalign-micro")


def test_clip_fingerprint_follows_the_image_tower_only(micro_clip, tmp_path):
    from base_models.clip.model_io import load_clip, save_clip
    from evaluation.features import clip_features

    base = clip_features(micro_clip).fingerprint
    model, _, _ = load_clip(micro_clip)
    cfg = json.loads((micro_clip / "open_clip_config.json").read_text())
    with torch.no_grad():
        model.text_projection.add_(1.0)  # another text tower: same image features
    assert clip_features(save_clip(model, cfg["model_cfg"], tmp_path / "t")).fingerprint == base
    with torch.no_grad():
        next(model.visual.parameters()).view(-1)[0] += 1e-3
    assert clip_features(save_clip(model, cfg["model_cfg"], tmp_path / "v")).fingerprint != base


def test_fingerprint_follows_weights_and_preprocessing():
    a, b = Counting(seed=0), Counting(seed=0)
    assert a.fingerprint == b.fingerprint
    assert module_fingerprint(a, {"pool": 4}) != module_fingerprint(a, {"pool": 8})
    with torch.no_grad():
        b.proj[0, 0] += 1e-3
    assert module_fingerprint(b, {"pool": 4}) != a.fingerprint


def test_extract_rejects_bad_shapes():
    with pytest.raises(ArtalignError, match=r"\(B, 3, H, W\)"):
        extract(Counting(), torch.rand(2, 1, 8, 8))
    with pytest.raises(ArtalignError, match="batch_size"):
        extract(Counting(), torch.rand(2, 3, 8, 8), batch_size=0)


def test_inception_needs_local_safetensors_weights(tmp_path):
    ctx = EvalContext()
    with pytest.raises(ArtalignError, match="weights=FILE.safetensors"):
        get_extractor("inception")(ctx)
    with pytest.raises(ArtalignError, match="do not exist"):
        get_extractor("inception")(ctx, weights=tmp_path / "missing.safetensors")
    pth = tmp_path / "weights-inception.pth"
    pth.write_bytes(b"not read")
    with pytest.raises(ArtalignError, match="never unpickles"):
        get_extractor("inception")(ctx, weights=pth)


def test_inception_loads_safetensors_without_unpickling(tmp_path, monkeypatch):
    """Random InceptionV3 weights saved as safetensors give torchmetrics' network's features."""
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    from torchmetrics.image.fid import NoTrainInceptionV3

    # a randomly initialised network: no weights to load while we build it
    monkeypatch.setattr(fidelity, "load_state_dict_from_url", lambda *a, **k: {})
    monkeypatch.setattr(
        fidelity.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None
    )
    torch.manual_seed(0)
    ref = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
    monkeypatch.undo()
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    weights = tmp_path / "inception.safetensors"
    save_file(state, str(weights))

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_unpickling)
    net = inception_features(weights)
    monkeypatch.undo()
    assert fidelity.torch is torch  # the stand-in is gone again
    assert isinstance(net.net, NoTrainInceptionV3) and net.num_features == 2048
    loaded = net.net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in ref.state_dict().items())
    feats = extract(net, _images(1, size=32))  # one 299 px pass: seconds on a CPU
    assert feats.shape == (1, 2048) and torch.isfinite(feats).all()
    assert net.fingerprint == module_fingerprint(
        ref, {"kind": "inception", "feature": 2048, "antialias": True, "uint8": "trunc"}
    )
    assert net.fingerprint != InceptionFeatures(net.net, 2048, antialias=False).fingerprint


def test_inception_wrapper_casts_like_torchmetrics_normalize():
    """Float images become uint8 as FrechetInceptionDistance(normalize=True) makes them."""
    seen = []

    class Stub(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return torch.ones(len(x), 4, dtype=torch.float64)

    images = _images(3)
    out = InceptionFeatures(Stub(), 4, antialias=True)(images)
    assert out.dtype == torch.float32 and out.shape == (3, 4)
    assert seen[0].dtype == torch.uint8 and torch.equal(seen[0], (images * 255).byte())


# ----------------------------------------------------------------------------- the cache


def test_cache_hit_does_not_recompute_and_survives_the_process(tmp_path):
    net = Counting()
    images = _images(6)
    cache = FeatureCache(tmp_path / "cache")
    first = cache.get_or_compute(net, images)
    again = cache.get_or_compute(net, images)
    assert net.calls == 1 and cache.hits == 1 and cache.misses == 1
    assert torch.equal(first, again) and first.dtype == torch.float64
    files = list((tmp_path / "cache").iterdir())
    assert [f.suffix for f in files] == [".safetensors"]  # one entry, no temporary left over
    # a new cache on the same folder (another process) reads it from disk, bit for bit
    fresh = FeatureCache(tmp_path / "cache")
    assert torch.equal(fresh.get_or_compute(net, images), first) and net.calls == 1


def test_cache_key_changes_with_pixels_weights_and_extra(tmp_path):
    net = Counting()
    images = _images(3)
    key = images_key(net, images)
    changed = images.clone()
    changed[1, 2, 5, 7] += 1 / 255
    assert images_key(net, changed) != key
    assert images_key(Counting(seed=1), images) != key
    assert images_key(net, images, key_extra="x") != key
    assert images_key(net, images.clone()) == key
    cache = FeatureCache(tmp_path)
    cache.get_or_compute(net, images)
    cache.get_or_compute(net, changed)
    assert net.calls == 2


def test_memory_only_cache_and_persist_false(tmp_path):
    net = Counting()
    mem = FeatureCache(None)
    mem.get_or_compute(net, _images(2))
    mem.get_or_compute(net, _images(2))
    assert net.calls == 1
    disk = FeatureCache(tmp_path / "c")
    disk.get_or_compute(net, _images(2), persist=False)
    assert not (tmp_path / "c").exists()


def test_corrupt_cache_file_is_recomputed(tmp_path):
    net = Counting()
    images = _images(3)
    cache = FeatureCache(tmp_path)
    good = cache.get_or_compute(net, images).clone()
    path = cache.path(images_key(net, images))
    path.write_bytes(b"truncated")
    assert torch.equal(FeatureCache(tmp_path).get_or_compute(net, images), good)
    assert net.calls == 2


def test_extractor_without_fingerprint_is_refused(tmp_path):
    with pytest.raises(ArtalignError, match="fingerprint"):
        FeatureCache(tmp_path).get_or_compute(torch.nn.Flatten(), _images(2))


def _load_folder(path: Path) -> torch.Tensor:
    from base_models.data.loaders import load_records

    arrays = [np.asarray(r.load_image(), dtype=np.uint8) for r in load_records(path)]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def test_reference_set_is_embedded_once(micro_data, tmp_path):
    net = Counting()
    ctx = EvalContext(cache_dir=tmp_path / "cache")
    feats = reference_features(ctx, micro_data, net, batch_size=5)
    assert feats.shape == (16, 4) and net.calls == 4  # 16 images in batches of 5
    torch.testing.assert_close(feats, extract(Counting(), _load_folder(micro_data)))
    assert torch.equal(reference_features(ctx, micro_data, net), feats) and net.calls == 4
    # another run with the same cache folder reads the file instead of embedding
    again = reference_features(EvalContext(cache_dir=tmp_path / "cache"), micro_data, net)
    assert torch.equal(again, feats) and net.calls == 4
    assert reference_features(ctx, micro_data, net, n=6).shape == (6, 4)
    with pytest.raises(ArtalignError, match="n_reference"):
        reference_features(ctx, micro_data, net, n=99)


def test_reference_key_follows_the_image_files(micro_data, tmp_path):
    net = Counting()
    folder = tmp_path / "ref"
    shutil.copytree(micro_data, folder)
    cache_dir = tmp_path / "cache"
    before = reference_features(EvalContext(cache_dir=cache_dir), folder, net)
    calls = net.calls
    first = folder / "images" / "000000.png"
    with Image.open(first) as im:
        pixels = np.asarray(im.convert("RGB")).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(first)
    after = reference_features(EvalContext(cache_dir=cache_dir), folder, net)
    assert net.calls > calls
    assert not torch.equal(before[0], after[0]) and torch.equal(before[1:], after[1:])
    assert len(list(cache_dir.glob("*.safetensors"))) == 2


def test_clip_weights_hold_one_metadata_key(micro_clip, tmp_path):
    """safetensors writes its metadata map in hash order, which changes from process to process:
    with two keys the same weights made files of different bytes, so the CLIP fingerprint that
    a reward model records changed between a run and its resumed rerun (the slow kill test)."""
    from safetensors import safe_open

    from base_models.clip.model_io import WEIGHTS_FILE, load_clip, save_clip

    model, _, _ = load_clip(micro_clip)
    cfg = json.loads((micro_clip / "open_clip_config.json").read_text())
    out = save_clip(model, cfg["model_cfg"], tmp_path / "c")
    with safe_open(str(out / WEIGHTS_FILE), framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
