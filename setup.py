from setuptools import find_packages, setup

setup(
    name="tf_advssl",
    version="0.1.0",
    description="Adversarial semi-supervised learning in Keras 3 / TensorFlow 2: VAT, AT, "
                "xVAT, AdvMixup, SCAR and baselines, robustness evaluation, TF Serving export.",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tf_advssl", "tf_advssl.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.18",
        "keras>=3.5",
        "tensorflow-datasets>=4.9.7",
        "importlib_resources>=6",   # tfds offline preparation from a manual directory
        "absl-py>=2.1",
        "tensorboard>=2.18",        # TensorFlow 2.21 no longer installs it; tf.summary needs it
        "numpy>=1.26",
        "scikit-learn>=1.3",        # Two Circles / moons generators
        "matplotlib>=3.8",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5",
                 "adversarial-robustness-toolbox>=1.17",  # cross-check of FGSM/FGM/PGD (tests/test_robustness.py)
                 "tensorflow-serving-api>=2.18"],         # gRPC PredictRequest (tests/test_serving.py)
        "serving": ["tensorflow-serving-api>=2.18"],      # gRPC client of bin/serving_client.py
    },
    scripts=["bin/train.py", "bin/export.py", "bin/evaluate.py", "bin/plot.py", "bin/serving_client.py"],
)
