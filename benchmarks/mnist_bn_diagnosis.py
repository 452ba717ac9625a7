"""Where a trained run's confidence comes from: the same labeled and test images under
eval-mode (moving) statistics, under training-mode batch statistics of test-only batches,
of labeled-only batches and of batches mixing the two; then the run's BN statistics
re-estimated on training inputs (``layers.recalibrate_batch_norm``).

    python benchmarks/mnist_bn_diagnosis.py WORKDIR

Used for the session-4 diagnosis of exact-direction VAT on MNIST-100 (docs/methods.md).
"""
import sys, numpy as np, tensorflow as tf
from tf_advssl import data as data_lib, runs
from tf_advssl.layers import frozen_batch_stats, recalibrate_batch_norm
wd = sys.argv[1]
model, config, spec, pre = runs.restore_model(wd)
print("step", int(model.optimizer.iterations.numpy()))
data = data_lib.load(config)
net = model.classifier
def ent(logits):
    p = tf.nn.softmax(logits).numpy(); return float(np.mean(-(p*np.log(p+1e-12)).sum(1)))
def X(idx, src="train"):
    arr = data.x_train if src=="train" else data.x_test
    return pre(tf.constant(np.asarray(arr[np.sort(idx)])))
rng = np.random.default_rng(0)
lab = np.asarray(data.labeled_indices)
yl = data.y_train[lab]
xt = X(np.arange(2000), "test"); yt = data.y_test[:2000]
lt = net(xt, training=False); print("eval-mode test: err %.2f ent %.3f" % (100*np.mean(np.argmax(lt,1)!=yt), ent(lt)))
with frozen_batch_stats():
    errs, ents = [], []
    for i in range(0, 2000, 128):
        l = net(xt[i:i+128], training=True); errs.append(np.mean(np.argmax(l,1)!=yt[i:i+128])); ents.append(ent(l))
    print("train-mode test batches of 128: err %.2f ent %.3f" % (100*np.mean(errs), np.mean(ents)))
    xl = X(lab)
    yl = data.y_train[np.sort(lab)]
    for i in range(0,100,32):
        l = net(xl[i:i+32], training=True)
    l = net(xl[:32], training=True); print("train-mode labeled batch 32: err %.2f ent %.3f" % (100*np.mean(np.argmax(l,1)!=yl[:32]), ent(l)))
    mixed = tf.concat([xl[:16], xt[:112]], 0)
    l = net(mixed, training=True)
    print("labeled inside a test batch: err %.2f ent %.3f | test part ent %.3f" % (100*np.mean(np.argmax(l[:16],1)!=yl[:16]), ent(l[:16]), ent(l[16:])))
    l = net(xl[:16], training=False)
print("eval-mode labeled: ent %.3f" % ent(net(xl, training=False)))
# distances: labeled to nearest test
d = np.sqrt(((xt.numpy()[:500,None,:].reshape(500,1,-1) - xl.numpy().reshape(1,100,-1))**2).sum(-1))
print("median NN distance test->labeled %.2f" % np.median(d.min(1)))
n = recalibrate_batch_norm(net, [X(rng.permutation(len(data.x_train))[i*250:(i+1)*250]) for i in range(40)])
lt = net(xt, training=False); print("recalibrated eval test: err %.2f ent %.3f" % (100*np.mean(np.argmax(lt,1)!=yt), ent(lt)))
