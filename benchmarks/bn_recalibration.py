"""Apply the library's --bn_recalibration to a finished run's checkpoint; print the test
error before and after.

    python benchmarks/bn_recalibration.py WORKDIR NUM_EXAMPLES
"""
import sys
from tf_advssl import data as data_lib, runs, training
model, config, spec, pre = runs.restore_model(sys.argv[1])
data = data_lib.load(config)
before = training.evaluate(model, data, "test", 500)
n = training.recalibrate_batch_norm(model, data, config.replace(bn_recalibration_examples=int(sys.argv[2])))
print(f"step {int(model.optimizer.iterations.numpy())}: test error {before:.2f} -> {training.evaluate(model, data, 'test', 500):.2f} after recalibration ({n} batches)")
