"""Registry of training methods: name -> "module:Class".

A new method is one new file in this package plus one line here, and its ``Params``
dataclass (its hyper-parameters, each a flag of ``bin/train.py``) in ``tf_advssl.hparams``
plus one line there.  Each class is a :class:`tf_advssl.methods.base.SSLModel`.
"""
from __future__ import annotations

import importlib

from tf_advssl import config as config_lib
from tf_advssl.config import ConfigError, dataset_family
from tf_advssl.hparams import make_params, param_fields  # noqa: F401 (part of this module's API)

METHODS = {
    "supervised": "tf_advssl.methods.supervised:Supervised",
    "vat": "tf_advssl.methods.vat:VAT",
    "at": "tf_advssl.methods.at:AdversarialTraining",
    "xat": "tf_advssl.methods.xvat:XAT",
    "xvat": "tf_advssl.methods.xvat:XVAT",
    "advmixup": "tf_advssl.methods.advmixup:AdvMixup",
    "ict": "tf_advssl.methods.advmixup:ICT",
    "advgen": "tf_advssl.methods.advgen:AdvGen",
    "pi_model": "tf_advssl.methods.pi_model:PiModel",
    "temporal_ensembling": "tf_advssl.methods.temporal_ensembling:TemporalEnsembling",
    "mean_teacher": "tf_advssl.methods.mean_teacher:MeanTeacher",
    "pseudo_label": "tf_advssl.methods.pseudo_label:PseudoLabel",
    "mixmatch": "tf_advssl.methods.mixmatch:MixMatch",
    "fixmatch": "tf_advssl.methods.fixmatch:FixMatch",
    "aae": "tf_advssl.methods.aae:AAE",
    "fm_gan": "tf_advssl.methods.fm_gan:FMGAN",
    "scar": "tf_advssl.methods.scar:SCAR",
}


# The classes by their Python names, for the Keras API: ``tf_advssl.methods.VAT(classifier, vat_eps=2.0)``.
CLASSES = {path.split(":")[1]: path for path in METHODS.values()}
__all__ = sorted(CLASSES) + ["METHODS", "get_method", "make_params", "param_fields", "resolve", "run_defaults"]


def __getattr__(name: str):
    """``tf_advssl.methods.VAT`` and the other classes, imported when first used."""
    if name not in CLASSES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, class_name = CLASSES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def get_method(name: str):
    """The SSLModel subclass registered as ``name``."""
    if name not in METHODS:
        raise ConfigError(f"--method={name!r} is unknown; allowed: {', '.join(sorted(METHODS))}")
    module_name, class_name = METHODS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def run_defaults(method: str, family: str) -> dict:
    """The run settings ``method`` brings (``config_defaults`` of its class, then its
    ``dataset_config_defaults`` for the dataset ``family``); {} for an unknown method."""
    if method not in METHODS:
        return {}
    method_cls = get_method(method)
    defaults = dict(method_cls.config_defaults)
    defaults.update(method_cls.dataset_config_defaults.get(family, {}))
    return defaults


def resolve(config, inputs=None):
    """``config.resolve`` with the defaults of the config's method (``run_defaults``)."""
    family = dataset_family(config.dataset, inputs)
    return config_lib.resolve(config, inputs, run_defaults(config.method, family))
