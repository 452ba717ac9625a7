"""The hyper-parameters of every method, without TensorFlow: name -> "module:Params class".

Each method's ``Params`` dataclass lives here (``tf_advssl.hparams.<method module>``), apart
from its model (``tf_advssl.methods.<method module>``, which sets ``Params`` on its class), so
that the flags of ``bin/train.py`` and their checks load in the time of a Python import.
"""
from __future__ import annotations

import dataclasses
import importlib

from tf_advssl.config import ConfigError, dataset_family

PARAMS = {
    "supervised": "tf_advssl.hparams.common:NoParams",
    "vat": "tf_advssl.hparams.vat:VATParams",
    "at": "tf_advssl.hparams.at:ATParams",
    "xat": "tf_advssl.hparams.xvat:XParams",
    "xvat": "tf_advssl.hparams.xvat:XVATParams",
    "advmixup": "tf_advssl.hparams.advmixup:AdvMixupParams",
    "ict": "tf_advssl.hparams.advmixup:ICTParams",
    "advgen": "tf_advssl.hparams.advgen:AdvGenParams",
    "pi_model": "tf_advssl.hparams.pi_model:PiModelParams",
    "temporal_ensembling": "tf_advssl.hparams.temporal_ensembling:TemporalEnsemblingParams",
    "mean_teacher": "tf_advssl.hparams.mean_teacher:MeanTeacherParams",
    "pseudo_label": "tf_advssl.hparams.pseudo_label:PseudoLabelParams",
    "mixmatch": "tf_advssl.hparams.mixmatch:MixMatchParams",
    "fixmatch": "tf_advssl.hparams.fixmatch:FixMatchParams",
    "aae": "tf_advssl.hparams.aae:AAEParams",
    "fm_gan": "tf_advssl.hparams.fm_gan:FMGANParams",
    "scar": "tf_advssl.hparams.scar:SCARParams",
}


def get_params(method: str) -> type:
    """The Params dataclass of ``method``."""
    if method not in PARAMS:
        raise ConfigError(f"--method={method!r} is unknown; allowed: {', '.join(sorted(PARAMS))}")
    module_name, class_name = PARAMS[method].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def flag_fields(params_cls: type) -> list:
    """The fields of ``params_cls`` that are flags (``metadata["flag"] = False`` ones are not,
    e.g. SCAR's resolved ``base_params``)."""
    return [field for field in dataclasses.fields(params_cls) if field.metadata.get("flag", True)]


def param_fields() -> dict:
    """All method hyper-parameters that are flags: flag name -> dataclasses.Field (first
    definition wins)."""
    fields = {}
    for method in PARAMS:
        for field in flag_fields(get_params(method)):
            fields.setdefault(field.name, field)
    return fields


def make_params(method: str, dataset: str, overrides: dict, network: str | None = None):
    """The Params of ``method``: class defaults, then dataset defaults, then the defaults for
    the run's ``network`` (``NETWORK_DEFAULTS`` of the Params, if any), then ``overrides``.

    Keys of ``overrides`` that belong to other methods are ignored; keys that
    belong to no method raise ConfigError.  A method built on another one (SCAR)
    has a ``resolve(dataset, overrides)`` on its Params that completes them with
    the other method's params.
    """
    params_cls = get_params(method)
    own = {f.name for f in dataclasses.fields(params_cls)}
    unknown = set(overrides) - set(param_fields()) - own
    if unknown:
        raise ConfigError(f"unknown method parameters: {sorted(unknown)}")
    values = dict(params_cls.DATASET_DEFAULTS.get(dataset_family(dataset), {}))
    values.update(getattr(params_cls, "NETWORK_DEFAULTS", {}).get(network, {}))
    values.update({k: v for k, v in overrides.items() if k in own})
    params = params_cls(**values)
    params.validate()
    if hasattr(params, "resolve"):
        params = params.resolve(dataset, overrides)
    return params
