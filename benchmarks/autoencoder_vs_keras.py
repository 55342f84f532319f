"""The convolutional autoencoder: unroll's recipe vs the Keras example, same data, one process.

    pip install --target /tmp/kerasdeps keras          # Keras 3, no tensorflow needed
    PYTHONPATH=/tmp/kerasdeps python benchmarks/autoencoder_vs_keras.py            # 5 epochs
    PYTHONPATH=/tmp/kerasdeps python benchmarks/autoencoder_vs_keras.py --epochs 50
    PYTHONPATH=/tmp/kerasdeps python benchmarks/autoencoder_vs_keras.py --epochs 1 --max-train 2000

The Keras side is the model of keras.io/examples/vision/autoencoder ("Convolutional
autoencoder for image denoising"): Input 28x28x1, Conv2D(32, 3, relu, same), MaxPooling2D(2,
same), Conv2D(32, 3, relu, same), MaxPooling2D(2, same), Conv2DTranspose(32, 3, strides 2,
relu, same) x 2, Conv2D(1, 3, sigmoid, same); adam, binary_crossentropy, batch 128 (28,353
parameters), trained with ``model.fit``. The unroll side is the recipe's own training
(`unroll.recipes.autoencode.train`) with the ``fashion-conv`` preset, which copies that model
layer for layer (its sigmoid sits in the loss), with the same epochs, batch (128) and
optimizer (Adam, lr 1e-3).

Data, the same arrays for both: Fashion-MNIST's training images as the recipe splits them
(``valid_fraction`` 0.1, ``split_seed`` 0: 54,000 train, 6,000 validation), pixels / 255 in
[0, 1]; Keras trains on the 54,000 and validates on the 6,000 (the example validates on the
test set; here both sides keep the 10,000 test images out of training and selection, and
they are scored too). After training, both are scored by one function
(`scores`, numpy, float64) on each side's predicted pixel probabilities: BCE per pixel as
Keras's ``binary_crossentropy`` computes it (probabilities clipped to [1e-7, 1 - 1e-7], mean
over pixels and images) and MSE. Each side is scored with its final-epoch weights (Keras has
no checkpoint selection; unroll's ``last`` checkpoint) — unroll's recipe would report its best
epoch's, given as ``recipe_scores``. Seconds: the training loop of each (``model.fit``; the
recipe's epochs), per-epoch validation included, scoring and run files outside.

Threads: torch's intra-op threads (``--threads``) serve both, Keras running on the torch
backend (``KERAS_BACKEND`` is set to torch here). Prints one JSON line: per side the scores,
parameters, seconds and seconds per epoch, the ratio of the BCEs (unroll / Keras), the load
average before and after, versions and the machine. Needs Keras 3 (``pip install keras``; a
benchmark-only dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unroll.engine.device import device_name  # noqa: E402
from unroll.recipes.autoencode import load_autoencoder, make_config, prepare, train  # noqa: E402

EPS = 1e-7  # keras.config.epsilon(): binary_crossentropy clips probabilities to [EPS, 1 - EPS]


def import_keras():
    os.environ["KERAS_BACKEND"] = "torch"  # the same torch (and threads) as unroll
    try:
        import keras
    except Exception as e:  # ImportError, or a backend that fails to load
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        sys.exit(
            f"autoencoder_vs_keras: keras is not importable ({first}); install Keras 3 "
            f"(pip install keras), it runs on the torch backend"
        )
    return keras


def scores(probs: np.ndarray, target: np.ndarray, batch: int = 1000) -> dict[str, float]:
    """BCE per pixel (Keras's ``binary_crossentropy``: clipped probabilities, mean over
    pixels) and MSE, averaged over images; both arrays ``[N, H, W]`` in [0, 1]."""
    bce = mse = 0.0
    for i in range(0, len(target), batch):
        p = np.clip(probs[i : i + batch].astype(np.float64), EPS, 1.0 - EPS)
        t = target[i : i + batch].astype(np.float64)
        bce += float(-(t * np.log(p) + (1.0 - t) * np.log(1.0 - p)).sum())
        mse += float(((p - t) ** 2).sum())
    n = target.size
    return {"bce": bce / n, "mse": mse / n}


def part_arrays(data, part: str) -> np.ndarray:
    return data.batch(part, slice(None)).cpu().numpy().astype(np.float32)  # [N, H, W], [0, 1]


def run_unroll(config, data, arrays: dict[str, np.ndarray], out: Path) -> dict:
    result = train(config, out=out, data=data, quiet=True)
    model, ckpt, _ = load_autoencoder(result.run_dir, "last")  # the final epoch's weights
    side = {}
    with torch.no_grad():
        for part, x in arrays.items():
            xs = torch.from_numpy(x)
            probs = np.concatenate(
                [torch.sigmoid(model(xs[i : i + 1000])).numpy() for i in range(0, len(xs), 1000)]
            )
            side[part] = scores(probs, x)
    history = result.history
    return {
        **side,
        "parameters": result.parameters,
        "seconds": result.seconds,
        "seconds_per_epoch": result.seconds / config.epochs,
        "own_valid_loss_last": history[-1].get("valid_loss") if history else None,
        "best_epoch": result.best_epoch,
        "recipe_scores": {p: {k: result.scores[p][k] for k in ("bce", "mse")} for p in arrays},
    }


def run_keras(keras, arrays: dict[str, np.ndarray], epochs: int, batch: int, seed: int) -> dict:
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(inp)
    x = layers.MaxPooling2D((2, 2), padding="same")(x)
    x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(x)
    x = layers.MaxPooling2D((2, 2), padding="same")(x)
    x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
    x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
    x = layers.Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)
    model = keras.Model(inp, x)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    train_x, valid_x = arrays["train"][..., None], arrays["valid"][..., None]
    start = time.perf_counter()
    fitted = model.fit(
        train_x,
        train_x,
        epochs=epochs,
        batch_size=batch,
        shuffle=True,
        validation_data=(valid_x, valid_x),
        verbose=0,
    )
    seconds = time.perf_counter() - start
    side = {}
    for part in ("valid", "test"):
        probs = model.predict(arrays[part][..., None], batch_size=1000, verbose=0)[..., 0]
        side[part] = scores(np.asarray(probs), arrays[part])
    return {
        **side,
        "parameters": int(model.count_params()),
        "seconds": seconds,
        "seconds_per_epoch": seconds / epochs,
        "own_valid_loss_last": float(fitted.history["val_loss"][-1]),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-train", type=int, default=0, help="0 = all 54,000 (for trials)")
    ap.add_argument("--keras-first", action="store_true", help="train Keras before unroll")
    args = ap.parse_args(argv)
    keras = import_keras()  # fails here, in one line, before any training
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    config = make_config(
        "fashion-conv",
        {
            "epochs": args.epochs,
            "threads": args.threads,
            "seed": args.seed,
            "max_train": args.max_train,
            "device": "cpu",
        },
    )
    data = prepare(config, torch.device("cpu"), progress=False)
    arrays = {p: part_arrays(data, p) for p in ("train", "valid", "test")}
    scored = {p: arrays[p] for p in ("valid", "test")}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        order = ("keras", "unroll") if args.keras_first else ("unroll", "keras")
        for side in order:
            if side == "unroll":
                results[side] = run_unroll(config, data, scored, Path(tmp) / "unroll")
            else:
                results[side] = run_keras(keras, arrays, args.epochs, config.batch_size, args.seed)
    floor = {p: scores(np.clip(arrays[p], EPS, 1 - EPS), arrays[p])["bce"] for p in scored}
    line = {
        "benchmark": "autoencoder_vs_keras",
        "data": f"{data.name}: train {len(arrays['train'])}, valid {len(arrays['valid'])} "
        f"(held out of train, split_seed {config.split_seed}), test {len(arrays['test'])}",
        "epochs": args.epochs,
        "batch_size": config.batch_size,
        "optimizer": f"adam lr {config.lr}",
        "threads": args.threads,
        "order": list(results),
        "unroll": results["unroll"],
        "keras": results["keras"],
        "bce_ratio_valid": results["unroll"]["valid"]["bce"] / results["keras"]["valid"]["bce"],
        "bce_ratio_test": results["unroll"]["test"]["bce"] / results["keras"]["test"]["bce"],
        "bce_floor": floor,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "machine": f"{device_name('cpu')}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "keras_version": keras.__version__,
        "keras_backend": keras.backend.backend(),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
