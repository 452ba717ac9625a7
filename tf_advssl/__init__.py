"""Adversarial semi-supervised learning for Keras 3.

    import tf_advssl
    model = tf_advssl.methods.VAT(classifier, vat_eps=2.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(tf_advssl.data.ssl_dataset((x_l, y_l), x_u), steps_per_epoch=100, epochs=5)

Submodules are imported when first used, so ``import tf_advssl`` loads no TensorFlow.
"""
import importlib

SUBMODULES = ("analysis", "config", "data", "distribution", "export", "layers", "losses", "methods",
              "networks", "optimizers", "perturbations", "plotting", "robustness", "serving", "training")
__all__ = list(SUBMODULES)


def __getattr__(name: str):
    if name not in SUBMODULES:
        raise AttributeError(f"module 'tf_advssl' has no attribute {name!r}")
    return importlib.import_module(f"tf_advssl.{name}")
