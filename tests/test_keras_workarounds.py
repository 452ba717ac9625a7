"""The workarounds of tf_advssl/keras_workarounds.py still reach what they mean to in the
installed Keras: these tests fail when Keras changes under them."""
import keras
import numpy as np

from tf_advssl import keras_workarounds


def test_randaugment_still_draws_its_operations_from_the_replaced_layers():
    layer = keras_workarounds.narrowed_randaugment((0.0, 1.0), 2, 0.5, seed=0, rotation_degrees=30.0, shear=0.3,
                                                   translation=0.125)
    operations = set(getattr(keras.layers.RandAugment, "_AUGMENT_LAYERS", ()))
    assert set(keras_workarounds.GEOMETRIC_LAYERS) <= operations, "RandAugment no longer lists these operations"
    for name, kind in keras_workarounds.GEOMETRIC_LAYERS.items():
        assert isinstance(getattr(layer, name), kind)
    assert layer.random_translation.height_factor == 0.125 and layer.random_shear.x_factor == (-0.3, 0.3)


def test_only_the_replaced_geometric_operations_move_pixels_further():
    """With every operation but the translation disabled, RandAugment's output is the
    replaced translation's: shifts of at most 1 pixel of 8 (0.125), never the default 0.5."""
    layer = keras_workarounds.narrowed_randaugment((0.0, 1.0), 1, 0.5, seed=3, rotation_degrees=0.0, shear=0.0,
                                                   translation=0.125)
    layer._AUGMENT_LAYERS = ["random_translation"]  # instance attribute: this layer only
    image = np.full((1, 8, 8, 1), 0.5, np.float32)  # the fill value: only the bright pixel moves
    image[0, 4, 4, 0] = 1.0
    for _ in range(10):
        out = np.asarray(layer(image, training=True))[0, :, :, 0]
        row, col = np.unravel_index(np.argmax(out), out.shape)
        assert abs(row - 4) <= 1 and abs(col - 4) <= 1
