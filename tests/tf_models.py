"""TensorFlow SavedModels for the tests, made in .venv-tf (run as a script there: no lensgraph import).

    .venv-tf/bin/python -I tests/tf_models.py build --data mnist.npz --out DIR
        DIR/mnist_model   a Keras CNN with two Dropout layers, trained on real MNIST training digits,
                          softmax output, input float32 [N, 28, 28] in 0..1 (model.export: the Keras 3 way)
        DIR/logits_model  a small seeded Keras model (untrained), input [N, 28, 28, 1], logits out
        DIR/lgamma_model  a tf.Module whose signature uses tf.math.lgamma, an op tf2onnx cannot convert
    .venv-tf/bin/python -I tests/tf_models.py predict --saved-model DIR --data images.npz --out probs.npy
        the serving_default signature on uint8 images / 255 (the reference the tests compare ONNX Runtime with)

``build`` prints one JSON line: the trained model's TensorFlow accuracy on the test digits given, its
training steps and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def build(data: Path, out: Path, steps: int, seed: int) -> dict:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.threading.set_intra_op_parallelism_threads(2)
    with np.load(data) as d:
        x_train, y_train = d["train_images"].astype(np.float32) / 255.0, d["train_labels"].astype(np.int64)
        x_test, y_test = d["test_images"].astype(np.float32) / 255.0, d["test_labels"].astype(np.int64)

    started = time.perf_counter()
    model = keras.Sequential([
        keras.Input((28, 28), name="image"),
        keras.layers.Reshape((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.25),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ], name="mnist_model")
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    batch = 64
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_train))[: steps * batch]
    model.fit(x_train[order], y_train[order], batch_size=batch, epochs=1, shuffle=False, verbose=0)
    trained_s = time.perf_counter() - started
    accuracy = float(np.mean(model.predict(x_test, batch_size=500, verbose=0).argmax(axis=1) == y_test))
    model.export(str(out / "mnist_model"), verbose=False)

    logits = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(4, 5, strides=2, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(10),
    ], name="logits_model")
    logits.export(str(out / "logits_model"), verbose=False)

    class Lgamma(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="image")])
        def serve(self, image):
            return {"scores": tf.reduce_sum(tf.math.lgamma(image + 1.0), axis=2)[:, :10]}

    module = Lgamma()
    tf.saved_model.save(module, str(out / "lgamma_model"), signatures={"serving_default": module.serve})
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "steps": steps, "batch": batch,
            "train_seconds": round(trained_s, 1), "test_accuracy": accuracy, "test_digits": int(len(x_test))}


def predict(saved_model: Path, data: Path, out: Path) -> dict:
    import tensorflow as tf

    function = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    (key,) = function.structured_input_signature[1]
    with np.load(data) as d:
        x = d["images"].astype(np.float32) / np.float32(255.0)
    result = function(**{key: tf.constant(x)})
    (probs,) = result.values()
    np.save(out, probs.numpy())
    return {"key": key, "shape": list(probs.shape)}


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--data", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--steps", type=int, default=800)
    b.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("predict")
    p.add_argument("--saved-model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "build":
        result = build(args.data, args.out, args.steps, args.seed)
    else:
        result = predict(args.saved_model, args.data, args.out)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
