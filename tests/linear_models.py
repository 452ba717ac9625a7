"""Tiny linear softmax models, numpy softmax and compiled methods around them, shared by the tests."""
import keras
import numpy as np

from tf_advssl.methods import get_method


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def linear_classifier(weights, bias):
    """keras model x -> x @ weights + bias (float32)."""
    model = keras.Sequential([keras.Input((weights.shape[0],)), keras.layers.Dense(weights.shape[1])])
    model.layers[0].set_weights([weights.astype(np.float32), bias.astype(np.float32)])
    return model


def make_method(method, classifier, params=None, lr=0.1, total_steps=10, **kwargs):
    """``method`` around ``classifier`` (``params`` default: the class defaults), compiled with
    SGD(lr) and its optimizer built, so that a test can read the slots before the first step."""
    cls = get_method(method)
    model = cls(classifier, params if params is not None else cls.Params(),
                num_classes=classifier.output_shape[-1], total_steps=total_steps, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(lr))
    model.optimizer.build(model.trainable_for_loss())
    return model
