"""The seed notebook as a plain Keras script: what a user would run without regbench.

Model 1 (L2 1e-4) or model 2 (the notebook's CustomRegularizer, exactly as it wrote it: an
out x out matrix per call), 1024-512-256 swish, BatchNorm, Dropout, Adam, batch 128, fit on numpy
arrays with validation data, as the notebook did. Data: an .npz in Keras' MNIST layout; the last
``--val`` training images are the validation set, so that the split matches regbench's sizes.
Prints one JSON line: {"epoch_seconds": [...]}.

    python bench/baseline_keras.py data/mnist.npz --regularizer l2 --epochs 3
"""

import argparse
import json
import time

import numpy as np
import tensorflow as tf
from tensorflow.keras import layers, models, regularizers


class CustomRegularizer(tf.keras.regularizers.Regularizer):
    def __init__(self, weight=1e-4):
        self.weight = weight

    def __call__(self, x):
        x = tf.abs(x)
        x_norm = x / (tf.reduce_sum(x, axis=1, keepdims=True) + 1e-8)

        cross_similarity = tf.matmul(x_norm, x_norm, transpose_a=True)
        off_diagonal = cross_similarity - tf.linalg.diag(tf.linalg.diag_part(cross_similarity))

        redundancy_penalty = tf.reduce_mean(off_diagonal)

        return self.weight * redundancy_penalty

    def get_config(self):
        return {"weight": self.weight}


class EpochTimes(tf.keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def build(regularizer):
    def reg():
        return regularizers.l2(1e-4) if regularizer == "l2" else CustomRegularizer()

    return models.Sequential([
        layers.Input(shape=(784,)),
        layers.Dense(1024, activation="swish", kernel_regularizer=reg()),
        layers.BatchNormalization(),
        layers.Dropout(0.4),
        layers.Dense(512, activation="swish", kernel_regularizer=reg()),
        layers.BatchNormalization(),
        layers.Dropout(0.3),
        layers.Dense(256, activation="swish", kernel_regularizer=reg()),
        layers.BatchNormalization(),
        layers.Dropout(0.1),
        layers.Dense(10, activation="softmax"),
    ])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("npz")
    parser.add_argument("--regularizer", choices=["l2", "custom"], default="l2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--val", type=int, default=6000)
    args = parser.parse_args()
    with np.load(args.npz) as data:
        images = data["x_train"].reshape(len(data["x_train"]), 784) / 255.0
        labels = data["y_train"]
    train_images, train_labels = images[:-args.val], labels[:-args.val]
    val_images, val_labels = images[-args.val:], labels[-args.val:]
    model = build(args.regularizer)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimes()
    model.fit(train_images, train_labels, epochs=args.epochs, batch_size=128,
              validation_data=(val_images, val_labels), callbacks=[timer], verbose=0)
    print(json.dumps({"epoch_seconds": timer.seconds}))


if __name__ == "__main__":
    main()
