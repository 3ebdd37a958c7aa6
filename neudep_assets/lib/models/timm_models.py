"""timm models for neudep: creating a model of a spec (from scratch or hub weights) and reading what
it expects (input size, mean, std, feature width, class count). torch and timm are imported inside the
functions that need them (Dagster re-imports code locations).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from neudep_assets.lib.specs import ModelSpec

class CheckpointError(ValueError):
    """A checkpoint folder (or a model to build) is missing, malformed or does not fit; names the path."""


class PretrainedWeightsUnavailable(CheckpointError):
    """Hub weights were asked for but cannot be had (offline, or the hub is unreachable)."""


# ---------------------------------------------------------------------------------------------- spec


def timm_kwargs(model_args: Mapping) -> dict:
    """Config lists -> tuples (timm signatures annotate tuples; lists would also work mostly)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in model_args.items()}


# ------------------------------------------------------------------------------------------ create


def _check_arch(arch: str) -> None:
    import timm
    from timm.models import parse_model_name, split_model_name_tag

    try:
        source, model_id = parse_model_name(arch)
    except ValueError as e:
        raise ValueError(f"unknown timm architecture {arch!r}: {e}") from None
    if source is not None:
        return  # hf-hub:...: checked when loading
    base, _tag = split_model_name_tag(model_id)
    if not timm.is_model(base):
        raise ValueError(
            f"unknown timm architecture {arch!r} (not in timm {timm.__version__}'s registry; "
            "see timm.list_models())"
        )


def create_model(
    spec: ModelSpec,
    num_classes: int | None,
    in_chans: int,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    img_size: int | None = None,
):
    """Build the model of ``spec``: untrained (seeded by ``spec.train['seed']``) or hub-pretrained
    (with its own head, which must have ``num_classes`` classes, unless None: CheckpointError naming both counts).

    A ``checkpoint`` spec is loaded with ``checkpoint_io.load_checkpoint`` instead. ``mean``/``std`` (the
    normalization the model is trained with) and ``img_size`` are written into the model's
    ``pretrained_cfg`` so that they are saved in ``config.json``; a from-scratch architecture that
    takes ``img_size`` (ViT, ...) is built for that size. Hub weights keep their input size.
    """
    if spec.checkpoint is not None:
        raise ValueError(f"model spec {spec.name!r} names a checkpoint folder: load it with load_checkpoint")
    if spec.arch is None:
        raise ValueError(f"model spec {spec.name!r} has neither arch nor checkpoint")
    import timm
    import torch

    _check_arch(spec.arch)
    kwargs = timm_kwargs(spec.model_args)
    if spec.pretrained:
        _check_hub_head(spec, None if num_classes is None else int(num_classes))  # from the weights, before building
        # hub weights keep their own input size unless model_args resize the model, and their own head:
        # timm would silently put a fresh, untrained head on a model asked for another class count
        overlay = _pretrained_cfg_overlay(in_chans, mean, std, kwargs.get("img_size"), from_scratch=False)
        try:
            model = timm.create_model(
                spec.arch, pretrained=True, in_chans=in_chans, pretrained_cfg_overlay=overlay or None, **kwargs,
            )
        except (TypeError, ValueError) as e:
            if _looks_offline(e):
                raise _offline_error(spec.arch, e) from e
            raise ValueError(f"cannot build {spec.arch!r} with model_args {spec.model_args!r}: {e}") from e
        except Exception as e:  # download / hub failures come in many types
            if "size mismatch" in str(e):
                raise CheckpointError(f"hub weights of {spec.arch!r} (model {spec.name!r}) do not fit the model its "
                                      f"config describes: {str(e)[:600]}") from e
            raise _offline_error(spec.arch, e) from e
        if num_classes is not None and num_classes_of(model) != int(num_classes):
            raise CheckpointError(
                f"hub model {spec.arch!r} (model {spec.name!r}) has {num_classes_of(model)} classes but the dataset "
                f"has {int(num_classes)} classes; its head is used as trained (a new head would be untrained): "
                "use a dataset of its classes, or a checkpoint trained on this dataset")
        return model.eval()
    overlay = _pretrained_cfg_overlay(in_chans, mean, std, img_size or kwargs.get("img_size"), from_scratch=True)
    size_kw = {}
    if img_size is not None and "img_size" not in kwargs:
        size_kw["img_size"] = img_size  # fixed-size archs (ViT, ...) take it; the others refuse it
    with torch.random.fork_rng(devices=[]):
        try:
            try:
                torch.manual_seed(spec.seed)
                model = timm.create_model(
                    spec.arch, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                    pretrained_cfg_overlay=overlay, **size_kw, **kwargs,
                )
            except TypeError as e:
                if not size_kw or "img_size" not in str(e):
                    raise
                torch.manual_seed(spec.seed)
                model = timm.create_model(
                    spec.arch, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                    pretrained_cfg_overlay=overlay, **kwargs,
                )
        except (TypeError, ValueError, AssertionError) as e:
            raise ValueError(
                f"cannot build timm architecture {spec.arch!r} with model_args {spec.model_args!r}: {e}"
            ) from e
    return model


def _check_hub_head(spec: ModelSpec, num_classes: int | None) -> None:
    """Refuse hub weights whose trained head does not have the dataset's ``num_classes`` rows, whatever the
    model is called (``resnet10t``, ``resnet10t.c3_in1k``, ``hf-hub:owner/repo``) and wherever its weights
    lie (the Hugging Face cache, a file named by the pretrained config): the head's rows are read from the
    weights file (``num_classes`` None: any count, the model keeps its own head), and a config.json whose class count disagrees with them is refused (timm would build
    the config's head and, on a count that differs from the request, start it untrained)."""
    found = hub_head_rows(spec.arch)
    if found is None:
        return  # weights of a kind not read here (a URL not cached as a file): the built model is checked
    rows, n_cfg, where = found
    if n_cfg is not None and n_cfg != rows:
        raise CheckpointError(
            f"hub model {spec.arch!r} (model {spec.name!r}): its config says {n_cfg} classes but the weights' head "
            f"({where}) has {rows}; timm would put an untrained {n_cfg}-class head on it. Fix the config.json of "
            "that model (num_classes) or use a checkpoint folder")
    if num_classes is not None and rows != num_classes:
        raise CheckpointError(
            f"hub model {spec.arch!r} (model {spec.name!r}) has {rows} classes but the dataset has {num_classes} "
            "classes; its head is used as trained (a new head would be untrained): use a dataset of its classes, "
            "or a checkpoint trained on this dataset")


def hub_head_rows(arch: str) -> tuple[int, int | None, str] | None:
    """(rows of the trained classifier in the weights, the class count the model's config claims, the weights
    file) of hub model ``arch``, resolved as timm resolves it; None when the weights are not a readable file."""
    from timm.models import get_pretrained_cfg, parse_model_name
    from timm.models._builder import _resolve_pretrained_source
    from timm.models._hub import load_model_config_from_hf, load_model_config_from_path

    source, model_id = parse_model_name(arch)
    try:
        if source == "hf-hub":
            cfg = load_model_config_from_hf(model_id)[0]
        elif source == "local-dir":
            cfg = load_model_config_from_path(model_id)[0]
        else:
            pc = get_pretrained_cfg(model_id)
            cfg = pc.to_dict() if pc is not None else {}
    except Exception as e:  # download / hub failures come in many types
        raise _offline_error(arch, e) from e
    classifier = cfg.get("classifier")
    if not cfg or not classifier:
        return None
    classifier = classifier if isinstance(classifier, str) else classifier[0]
    load_from, loc = _resolve_pretrained_source(cfg)
    try:
        path = _weights_file(load_from, loc)
    except Exception as e:
        raise _offline_error(arch, e) from e
    if path is None:
        return None
    rows = _tensor_rows(path, classifier + ".weight")
    if rows is None:
        return None
    n_cfg = cfg.get("num_classes")
    return rows - int(cfg.get("label_offset") or 0), (int(n_cfg) if n_cfg is not None else None), str(path)


def _weights_file(load_from: str, loc):
    """The local file of the weights timm would load (downloaded into the Hugging Face cache if needed)."""
    from pathlib import Path

    if load_from == "hf-hub":
        from timm.models._hub import download_from_hf

        repo, filename = loc if isinstance(loc, (list, tuple)) else (loc, "pytorch_model.bin")
        names = [filename] if filename.endswith(".safetensors") else ["model.safetensors", filename]
        for k, name in enumerate(names):
            try:
                return Path(download_from_hf(repo, name))
            except Exception:
                if k == len(names) - 1:
                    raise
    if load_from == "local-dir":
        folder = Path(loc)
        return next((folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()), None)
    if load_from == "file":
        return Path(loc)
    return None


def _tensor_rows(path, key: str) -> int | None:
    """The first dimension of tensor ``key`` in a weights file (safetensors: from its header only)."""
    if str(path).endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return f.get_slice(key).get_shape()[0] if key in f.keys() else None
    import torch

    sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    sd = sd.get("state_dict", sd) if isinstance(sd, dict) else {}
    return int(sd[key].shape[0]) if key in sd else None


def _pretrained_cfg_overlay(in_chans, mean, std, img_size, *, from_scratch: bool) -> dict:
    overlay: dict[str, Any] = {}
    if from_scratch:
        # a model trained here has no hub origin: drop the hub/weights metadata of the registry cfg
        overlay.update(tag=None, url=None, hf_hub_id=None, hf_hub_filename=None, license=None,
                       origin_url=None, paper_ids=None, paper_name=None, notes=None,
                       test_input_size=None, test_crop_pct=None, pool_size=None,
                       crop_pct=1.0, interpolation="bilinear")
    if mean is not None:
        overlay["mean"] = _per_channel(mean, in_chans, "mean")
    if std is not None:
        overlay["std"] = _per_channel(std, in_chans, "std")
    if img_size is not None:
        s = tuple(img_size) if isinstance(img_size, (list, tuple)) else (int(img_size), int(img_size))
        overlay["input_size"] = (in_chans, *s)
        overlay["crop_pct"] = 1.0
    return overlay


def _per_channel(v, in_chans: int, what: str) -> tuple:
    v = tuple(float(x) for x in (v if isinstance(v, (list, tuple)) else [v]))
    if len(v) == in_chans:
        return v
    if len(v) == 1:
        return v * in_chans
    if in_chans == 1:
        return (sum(v) / len(v),)
    raise ValueError(f"{what} has {len(v)} values but the model takes {in_chans} channels")


def _looks_offline(e: BaseException) -> bool:
    text = f"{type(e).__name__} {e}".lower()
    return any(s in text for s in ("offline", "connection", "resolve", "network", "hub", "download"))


def _offline_error(arch: str, e: BaseException) -> PretrainedWeightsUnavailable:
    return PretrainedWeightsUnavailable(
        f"pretrained weights for {arch!r} cannot be downloaded ({type(e).__name__}: {e}). "
        "Without internet (or with HF_HUB_OFFLINE=1) only weights already in the Hugging Face cache load. "
        "Save the model as a local timm checkpoint folder (config.json + model.safetensors, "
        "timm.models.save_for_hf(model, PATH, safe_serialization=True)) on a machine that has the "
        "weights, and list it in the config as `checkpoint: PATH` instead of `pretrained: true`."
    )


# -------------------------------------------------------------------------------------- inspection


def num_features(model) -> int:
    """Width d of the penultimate features (the input of the classifier head)."""
    n = getattr(model, "num_features", None)
    if n is None:
        head = model.get_classifier()
        n = head.in_features
    return int(n)


def num_classes_of(model) -> int:
    n = getattr(model, "num_classes", None)
    if n is None:
        n = model.get_classifier().out_features
    return int(n)


def model_data_config(model) -> dict:
    """timm's data config of ``model`` (input_size, mean, std, crop_pct, interpolation)."""
    from timm.data import resolve_model_data_config

    cfg = dict(resolve_model_data_config(model))
    in_chans = model_in_chans(model)
    size = tuple(cfg.get("input_size", (in_chans, 224, 224)))
    cfg["input_size"] = (in_chans, *size[1:])
    cfg["mean"] = _per_channel(cfg["mean"], in_chans, "mean")
    cfg["std"] = _per_channel(cfg["std"], in_chans, "std")
    return cfg


def model_in_chans(model) -> int:
    n = getattr(model, "in_chans", None)
    if n is not None:
        return int(n)
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            return int(m.in_channels * m.groups)
    size = getattr(model, "pretrained_cfg", {}).get("input_size")
    return int(size[0]) if size else 3


