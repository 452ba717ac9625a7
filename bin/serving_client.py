"""Query a running TensorFlow Serving server that serves an export of bin/train.py.

    python bin/serving_client.py --inputs=examples.npy                         # REST, port 8501
    python bin/serving_client.py --inputs=examples.npy --protocol=grpc        # gRPC, port 8500
    python bin/serving_client.py --inputs=examples.npy --signature=robust_predict --eps=8

``--inputs``: a .npy array of raw examples (uint8 images of the dataset's shape,
or float32 feature vectors), batch first.  REST first reads the model's
metadata and refuses inputs of the wrong shape or dtype before sending them.
Prints one JSON line per example (class, probabilities, and for robust_predict
whether the class survives an FGSM step of size eps, in raw input units).
See README, "Serving".
"""
import json
import sys

from absl import app, flags

flags.DEFINE_string("inputs", None, "A .npy file of raw examples (batch first).")
flags.DEFINE_string("host", "localhost", "Server host.")
flags.DEFINE_enum("protocol", "rest", ["rest", "grpc"], "REST (JSON) or gRPC (tensorflow-serving-api).")
flags.DEFINE_integer("rest_port", 8501, "REST port of the server.")
flags.DEFINE_integer("grpc_port", 8500, "gRPC port of the server.")
flags.DEFINE_string("model_name", "tf_advssl", "MODEL_NAME the server was started with.")
flags.DEFINE_integer("version", None, "Model version (default: the server's latest).")
flags.DEFINE_enum("signature", "serving_default", ["serving_default", "robust_predict"], "Signature to call.")
flags.DEFINE_float("eps", None, "robust_predict: FGSM step in raw input units (e.g. 8 = 8/255 of the pixel range).")
flags.DEFINE_float("timeout", 30.0, "Seconds to wait for the server.")
flags.mark_flag_as_required("inputs")


def main(argv):
    del argv
    import numpy as np

    from tf_advssl import serving

    FLAGS = flags.FLAGS
    x = np.load(FLAGS.inputs)
    eps = FLAGS.eps if FLAGS.signature == "robust_predict" else None
    try:
        if FLAGS.protocol == "rest":
            metadata = serving.http_json(serving.rest_url(FLAGS.host, FLAGS.rest_port, FLAGS.model_name,
                                                          FLAGS.version, "/metadata"), timeout=FLAGS.timeout)
            if "error" in metadata:
                raise RuntimeError(f"TF Serving error: {metadata['error']}")
            dtype, shape = serving.expected_inputs(metadata, FLAGS.signature)["inputs"]
            body = serving.rest_request(serving.check_inputs(x, shape, dtype), FLAGS.signature, eps)
            outputs = serving.parse_rest_response(serving.http_json(
                serving.rest_url(FLAGS.host, FLAGS.rest_port, FLAGS.model_name, FLAGS.version), body,
                timeout=FLAGS.timeout))
        else:
            request = serving.grpc_request(x, FLAGS.model_name, FLAGS.signature, eps, FLAGS.version)
            outputs = serving.grpc_predict(FLAGS.host, FLAGS.grpc_port, request, timeout=FLAGS.timeout)
    except (ValueError, RuntimeError, ImportError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for i in range(len(x)):
        print(json.dumps({name: np.asarray(values[i]).tolist() for name, values in sorted(outputs.items())}))
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
