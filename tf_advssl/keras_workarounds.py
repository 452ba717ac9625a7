"""The one place where tf_advssl reaches past Keras' public API, each with the test that fails
when Keras changes under it (tests/test_keras_workarounds.py).

``narrowed_randaugment``: ``keras.layers.RandAugment`` draws its rotation, shear and
translation from one ``factor`` shared by every operation; FixMatch (Sohn et al. 2020, its
table 12) narrows those three.  Keras has no argument for it, so the three sub-layers, public
layers held under the attribute names RandAugment's operation list uses, are replaced.
"""
import keras

# The RandAugment attributes replaced, and the Keras layer each must stay.
GEOMETRIC_LAYERS = {"random_rotation": keras.layers.RandomRotation, "random_shear": keras.layers.RandomShear,
                    "random_translation": keras.layers.RandomTranslation}


def narrowed_randaugment(value_range, num_ops, factor, seed, *, rotation_degrees, shear, translation):
    """RandAugment(value_range, num_ops, factor) whose rotation is at most ``rotation_degrees``,
    shear at most ``shear`` and translation at most ``translation`` (fractions of the image
    side); the geometric operations fill with the middle of ``value_range``."""
    layer = keras.layers.RandAugment(value_range=value_range, num_ops=num_ops, factor=factor, seed=seed)
    fill = dict(fill_mode="constant", fill_value=0.5 * (value_range[0] + value_range[1]))
    layer.random_rotation = keras.layers.RandomRotation(rotation_degrees / 360.0, seed=seed, **fill)
    layer.random_shear = keras.layers.RandomShear(shear, shear, seed=seed, **fill)
    layer.random_translation = keras.layers.RandomTranslation(translation, translation, seed=seed, **fill)
    return layer
