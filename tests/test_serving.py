"""Export for TF Serving and the client: the SavedModel run by ``saved_model_cli`` in a fresh
process gives the Keras model's outputs; robust_predict's flag is the FGSM survival of the
predicted class; bad inputs are refused clearly; the client sends TF Serving's documented
REST JSON and gRPC PredictRequest (checked against stand-in servers: a TF Serving process
is not available here)."""
import http.server
import json
import os
import subprocess
import sys
import threading
from concurrent import futures

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import data as data_lib
from tf_advssl import export, serving

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (4, 4, 1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(path, keras model, preprocessor, spec) of a tiny image classifier exported with
    a preprocessing that scales and centres (as ZCA runs do)."""
    base = tmp_path_factory.mktemp("export")
    spec = data_lib.DataSpec("tiny", SHAPE, 3, "uint8", (0, 255), True)
    inputs = keras.Input(SHAPE)
    hidden = keras.layers.Dense(8, activation="tanh", kernel_initializer=keras.initializers.GlorotNormal(1))(
        keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotNormal(2))(hidden))
    mean = np.random.RandomState(0).uniform(0.3, 0.7, size=16).astype(np.float32)
    preprocessor = data_lib.Preprocessor(scale=1 / 255.0, mean=mean, input_shape=SHAPE)
    path = export.export_saved_model(model, str(base), spec=spec, preprocessor=preprocessor)
    return path, model, preprocessor, spec


def images(n=6, seed=0):
    return np.random.RandomState(seed).randint(0, 256, size=(n,) + SHAPE).astype(np.uint8)


def keras_probabilities(model, preprocessor, x):
    return tf.nn.softmax(model(preprocessor(x), training=False)).numpy()


def fgsm_survives(model, preprocessor, x, eps):
    """The SCAR criterion by hand: one FGSM step in raw pixel space against the predicted class."""
    raw = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(raw)
        logits = model(preprocessor(raw), training=False)
        classes = tf.argmax(logits, axis=-1)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(classes, logits))
    adversarial = tf.clip_by_value(raw + np.reshape(eps, (-1, 1, 1, 1)) * tf.sign(tape.gradient(loss, raw)), 0, 255)
    return (tf.argmax(model(preprocessor(adversarial), training=False), axis=-1) == classes).numpy()


def test_saved_model_cli_in_a_fresh_process_gives_the_keras_outputs(exported, tmp_path):
    path, model, preprocessor, _ = exported
    x, eps = images(), np.array([0.0, 1.0, 4.0, 16.0, 64.0, 255.0], np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "eps.npy", eps)
    # robust_predict returns serving_default's outputs too: one fresh process checks both
    for signature, inputs in (("robust_predict", f"inputs={tmp_path / 'x.npy'};eps={tmp_path / 'eps.npy'}"),):
        outdir = tmp_path / signature
        result = subprocess.run(
            [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "run", "--dir", path,
             "--tag_set", "serve", "--signature_def", signature, "--inputs", inputs, "--outdir", str(outdir)],
            capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        assert result.returncode == 0, result.stderr[-2000:]
        expected = keras_probabilities(model, preprocessor, x)
        np.testing.assert_allclose(np.load(outdir / "probabilities.npy"), expected, atol=1e-6)
        np.testing.assert_array_equal(np.load(outdir / "classes.npy"), expected.argmax(axis=1))
    survives = np.load(tmp_path / "robust_predict" / "survives.npy")
    np.testing.assert_array_equal(survives, fgsm_survives(model, preprocessor, x, eps))
    assert survives[0] and not survives[-1]  # eps 0 changes nothing; 255 saturates every pixel


def test_robust_predict_flags_change_with_eps(exported):
    path, model, preprocessor, _ = exported
    signature = tf.saved_model.load(path).signatures["robust_predict"]
    x = images(40, seed=1)
    for eps in (2.0, 30.0):
        eps_batch = np.full(len(x), eps, np.float32)
        out = signature(inputs=tf.constant(x), eps=tf.constant(eps_batch))
        np.testing.assert_array_equal(out["survives"].numpy(), fgsm_survives(model, preprocessor, x, eps_batch))
    assert set(out) == {"probabilities", "classes", "survives"} and out["survives"].dtype == tf.bool


def test_wrong_dtype_or_shape_is_refused_with_a_clear_error(exported):
    path, _, _, _ = exported
    serve = tf.saved_model.load(path).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8 tensor but is a float"):
        serve(inputs=tf.constant(images().astype(np.float32)))
    for bad in (images()[:, :3], images()[..., 0], np.zeros((2, 4, 4, 3), np.uint8)):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"inputs must have shape \(batch, 4, 4, 1\) and dtype uint8; got shape"):
            serve(inputs=tf.constant(bad))
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, 4, 4, 1\); got \(6, 4, 4\)"):
        serving.check_inputs(images()[..., 0], SHAPE, np.uint8)
    with pytest.raises(ValueError, match="uint8 pixel values"):
        serving.check_inputs(images() * 1.5, SHAPE, np.uint8)


def test_exported_mlp_wn_serves_the_noiseless_keras_outputs(tmp_path):
    """The Improved-GAN discriminator (Gaussian noise layers, weight-normalised dense layers)
    exports; the SavedModel gives the inference-mode (noise-free) Keras outputs, every call."""
    from tf_advssl import networks

    spec = data_lib.DataSpec("tiny", SHAPE, 3, "uint8", (0, 255), True)
    model = networks.build_network("mlp_wn", SHAPE, 3, mlp_widths=(8, 6), seed=4)
    model.layers[-1].g.assign(np.array([4.0, 6.0, 8.0], np.float32))  # confident, noise-sensitive logits
    preprocessor = data_lib.Preprocessor(scale=1 / 255.0, input_shape=SHAPE)
    path = export.export_saved_model(model, str(tmp_path), spec=spec, preprocessor=preprocessor)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    x = images(20, seed=3)
    expected = keras_probabilities(model, preprocessor, x)
    assert not np.allclose(tf.nn.softmax(model(preprocessor(x), training=True)).numpy(), expected, atol=1e-3)
    for _ in range(2):
        out = serve(inputs=tf.constant(x))
        np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-6)
        np.testing.assert_array_equal(out["classes"].numpy(), expected.argmax(axis=1))


def test_export_refuses_an_existing_version_and_picks_the_next(exported, tmp_path):
    path, model, preprocessor, spec = exported
    base = os.path.dirname(path)
    with pytest.raises(FileExistsError, match="already exists"):
        export.export_saved_model(model, base, spec=spec, preprocessor=preprocessor,
                                  version=int(os.path.basename(path)))
    assert export.next_version(base) == int(os.path.basename(path)) + 1


def test_rest_request_is_tf_serving_row_format():
    x = images(2)
    body = serving.rest_request(x)
    assert body == {"signature_name": "serving_default", "instances": [{"inputs": x[0].tolist()},
                                                                        {"inputs": x[1].tolist()}]}
    robust = json.loads(json.dumps(serving.rest_request(x, "robust_predict", eps=8)))
    assert robust["signature_name"] == "robust_predict" and [i["eps"] for i in robust["instances"]] == [8.0, 8.0]
    assert serving.rest_url("h", 8501, "m") == "http://h:8501/v1/models/m:predict"
    assert serving.rest_url("h", 8501, "m", 3, "/metadata") == "http://h:8501/v1/models/m/versions/3/metadata"
    with pytest.raises(ValueError, match="robust_predict needs eps"):
        serving.rest_request(x, "robust_predict")


def test_grpc_request_is_a_predict_request(exported):
    from tensorflow_serving.apis import predict_pb2

    x = images(3)
    request = serving.grpc_request(x, "tf_advssl", "robust_predict", eps=[1.0, 2.0, 3.0], version=2)
    assert isinstance(request, predict_pb2.PredictRequest)
    assert (request.model_spec.name, request.model_spec.signature_name, request.model_spec.version.value) == \
        ("tf_advssl", "robust_predict", 2)
    assert request.inputs["inputs"].dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in request.inputs["inputs"].tensor_shape.dim] == [3, 4, 4, 1]
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["inputs"]), x)
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["eps"]), [1.0, 2.0, 3.0])
    assert request.inputs["eps"].dtype == tf.float32.as_datatype_enum


def metadata_of(path, model_name="tf_advssl"):
    """What TF Serving's GET .../metadata answers for this SavedModel (SignatureDefMap as JSON)."""
    from google.protobuf import json_format
    from tensorflow.python.tools import saved_model_utils

    meta_graph = saved_model_utils.get_meta_graph_def(path, "serve")
    signatures = {name: json_format.MessageToDict(sig, preserving_proto_field_name=True)
                  for name, sig in meta_graph.signature_def.items()}
    return {"model_spec": {"name": model_name, "version": "1"},
            "metadata": {"signature_def": {"signature_def": signatures}}}


class FakeRestServer(http.server.BaseHTTPRequestHandler):
    """Answers like TF Serving's REST API from the loaded SavedModel; records the requests."""
    saved_model_path = None
    requests = []

    def do_GET(self):
        self._answer(metadata_of(self.saved_model_path))

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, body))
        signature = tf.saved_model.load(self.saved_model_path).signatures[body["signature_name"]]
        names = body["instances"][0].keys()
        spec = signature.structured_input_signature[1]
        args = {n: tf.constant(np.array([i[n] for i in body["instances"]]), spec[n].dtype) for n in names}
        outputs = {k: v.numpy().tolist() for k, v in signature(**args).items()}
        self._answer({"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(len(body["instances"]))]})

    def _answer(self, value):
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_rest_client_round_trip_against_a_stand_in_server(exported, tmp_path):
    path, model, preprocessor, _ = exported
    FakeRestServer.saved_model_path = path
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeRestServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        x = images(3)
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "bad.npy", x[..., 0])
        client = [sys.executable, os.path.join(ROOT, "bin", "serving_client.py"), "--host=127.0.0.1",
                  f"--rest_port={server.server_address[1]}", "--signature=robust_predict", "--eps=4"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
        result = subprocess.run(client + [f"--inputs={tmp_path / 'x.npy'}"], capture_output=True, text=True,
                                timeout=120, cwd=ROOT, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
        expected = keras_probabilities(model, preprocessor, x)
        np.testing.assert_allclose([line["probabilities"] for line in lines], expected, atol=1e-6)
        assert [line["survives"] for line in lines] == fgsm_survives(model, preprocessor, x, np.full(3, 4.0)).tolist()
        request_path, body = FakeRestServer.requests[-1]
        assert request_path == "/v1/models/tf_advssl:predict" and body == serving.rest_request(x, "robust_predict", 4.0)
        refused = subprocess.run(client + [f"--inputs={tmp_path / 'bad.npy'}"], capture_output=True, text=True,
                                 timeout=120, cwd=ROOT, env=env)
        assert refused.returncode == 2 and "inputs must have shape (batch, 4, 4, 1)" in refused.stderr
        assert len(FakeRestServer.requests) == 1  # nothing was sent for the bad inputs
    finally:
        server.shutdown()


def test_grpc_client_round_trip_against_a_stand_in_server(exported):
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    path, model, preprocessor, _ = exported
    signatures = tf.saved_model.load(path).signatures

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            arguments = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
            outputs = signatures[request.model_spec.signature_name](**arguments)
            response = predict_pb2.PredictResponse()
            for name, value in outputs.items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        x = images(4)
        outputs = serving.grpc_predict("127.0.0.1", port, serving.grpc_request(x, "tf_advssl"), timeout=60)
        np.testing.assert_allclose(outputs["probabilities"], keras_probabilities(model, preprocessor, x), atol=1e-6)
    finally:
        server.stop(0)
