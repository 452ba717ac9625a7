"""Client side of TensorFlow Serving for the models ``export.py`` writes.

Requests are built here (and tested without a server); ``bin/serving_client.py``
sends them.  Formats, as TF Serving documents them:

REST (port 8501), row format:
    POST http://HOST:8501/v1/models/NAME[/versions/V]:predict
    {"signature_name": "serving_default", "instances": [{"inputs": <example>}, ...]}
    robust_predict: {"signature_name": "robust_predict",
                     "instances": [{"inputs": <example>, "eps": 8.0}, ...]}
    -> {"predictions": [{"probabilities": [...], "classes": k[, "survives": true]}, ...]}
    GET  http://HOST:8501/v1/models/NAME[/versions/V]/metadata -> the signatures.
gRPC (port 8500): ``tensorflow_serving.apis.prediction_service_pb2_grpc.PredictionServiceStub.Predict``
    with a ``predict_pb2.PredictRequest``: model_spec {name, signature_name[, version]},
    inputs {"inputs": TensorProto (batch, ...) [, "eps": TensorProto (batch,)]}.
    The gRPC part needs ``pip install tensorflow-serving-api`` (extra ``serving``).

An example is a raw input of the exported model: uint8 pixels (H, W, C) for
image sets, float32 features for vector sets.
"""
from __future__ import annotations

import json
import urllib.request
from typing import Optional

import numpy as np

SIGNATURES = ("serving_default", "robust_predict")
_PROTO_DTYPES = {"DT_UINT8": np.uint8, "DT_FLOAT": np.float32, "DT_INT64": np.int64, "DT_BOOL": np.bool_}


def check_inputs(inputs, shape, dtype) -> np.ndarray:
    """``inputs`` as an array of ``dtype`` and shape (batch,) + ``shape``; ValueError naming
    both shapes (or the dtypes) otherwise.  Integral values are accepted for uint8 inputs
    when they lie in 0..255, any numbers for float32."""
    array = np.asarray(inputs)
    shape = tuple(int(d) for d in shape)
    if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != shape:
        raise ValueError(f"inputs must have shape (batch, {', '.join(map(str, shape))}); got {array.shape}")
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        if not (np.issubdtype(array.dtype, np.integer) or np.all(np.mod(array, 1) == 0)) or \
                (array.size and (array.min() < 0 or array.max() > 255)):
            raise ValueError(f"inputs must be uint8 pixel values (integers 0..255); got dtype {array.dtype}")
    elif not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"inputs must be numbers ({dtype.name}); got dtype {array.dtype}")
    return array.astype(dtype)


def _eps_per_example(eps, batch: int) -> np.ndarray:
    eps = np.broadcast_to(np.asarray(eps, np.float32), (batch,))
    if np.any(eps < 0):
        raise ValueError(f"eps must be >= 0; got {eps}")
    return eps


def _check_signature(signature_name: str, eps):
    if signature_name not in SIGNATURES:
        raise ValueError(f"signature_name must be one of {', '.join(SIGNATURES)}; got {signature_name!r}")
    if (signature_name == "robust_predict") != (eps is not None):
        raise ValueError("robust_predict needs eps (raw input units, e.g. 8.0 for 8/255 of the pixel range) "
                         "and serving_default takes none")


def rest_url(host: str, port: int, model_name: str, version: Optional[int] = None, verb: str = ":predict") -> str:
    """The REST address of ``model_name`` (``verb`` ":predict" or "/metadata")."""
    version_part = f"/versions/{int(version)}" if version is not None else ""
    return f"http://{host}:{int(port)}/v1/models/{model_name}{version_part}{verb}"


def rest_request(inputs, signature_name: str = "serving_default", eps=None) -> dict:
    """The JSON body of a REST predict request (row format, named inputs)."""
    _check_signature(signature_name, eps)
    inputs = np.asarray(inputs)
    instances = [{"inputs": example.tolist()} for example in inputs]
    if eps is not None:
        for instance, value in zip(instances, _eps_per_example(eps, len(inputs))):
            instance["eps"] = float(value)
    return {"signature_name": signature_name, "instances": instances}


def parse_rest_response(response: dict) -> dict:
    """{output name: numpy array over the batch} of a REST predict response."""
    if "error" in response:
        raise RuntimeError(f"TF Serving error: {response['error']}")
    predictions = response["predictions"]
    if predictions and isinstance(predictions[0], dict):
        return {name: np.asarray([p[name] for p in predictions]) for name in predictions[0]}
    return {"outputs": np.asarray(predictions)}


def expected_inputs(metadata: dict, signature_name: str = "serving_default") -> dict:
    """{input name: (dtype, shape without the batch axis)} from a REST metadata response."""
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    if signature_name not in signatures:
        raise ValueError(f"the served model has no signature {signature_name!r}; it has {sorted(signatures)}")
    result = {}
    for name, info in signatures[signature_name]["inputs"].items():
        dims = [int(d["size"]) for d in info["tensor_shape"].get("dim", [])]
        result[name] = (_PROTO_DTYPES.get(info["dtype"], np.float32), tuple(dims[1:]))
    return result


def http_json(url: str, body: Optional[dict] = None, timeout: float = 30.0) -> dict:
    """GET (``body`` None) or POST JSON; returns the decoded answer (TF Serving's error text too)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.loads(answer.read().decode())
    except urllib.error.HTTPError as error:  # TF Serving puts {"error": ...} in the body
        text = error.read().decode()
        try:
            return json.loads(text)
        except ValueError:
            return {"error": f"HTTP {error.code}: {text}"}


def grpc_request(inputs, model_name: str, signature_name: str = "serving_default", eps=None,
                 version: Optional[int] = None):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest`` for ``inputs`` (a numpy array
    of the model's dtype and shape)."""
    _check_signature(signature_name, eps)
    predict_pb2 = _serving_apis()[0]
    import tensorflow as tf

    inputs = np.asarray(inputs)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(inputs))
    if eps is not None:
        request.inputs["eps"].CopyFrom(tf.make_tensor_proto(_eps_per_example(eps, len(inputs))))
    return request


def grpc_predict(host: str, port: int, request, timeout: float = 30.0) -> dict:
    """Send a PredictRequest; {output name: numpy array}."""
    import grpc
    import tensorflow as tf

    prediction_service_pb2_grpc = _serving_apis()[1]
    with grpc.insecure_channel(f"{host}:{int(port)}") as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=timeout)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def _serving_apis():
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError as error:
        raise ImportError("the gRPC client needs tensorflow-serving-api: "
                          "pip install 'tf_advssl[serving]' (or tensorflow-serving-api)") from error
    return predict_pb2, prediction_service_pb2_grpc
