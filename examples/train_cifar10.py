"""Train a small batch-normalised ConvNet on CIFAR-10 with the library API.

Run with ``python examples/train_cifar10.py [NUM_TRAINING] [EPOCHS]`` (defaults: 5000
images, 2 epochs; about a minute or two on a laptop). The data folder comes from
``$NNDL_DATA_DIR`` or the per-user cache (downloaded there if missing). The command
line does the same with more options: ``nndl train --help``.
"""

import sys
import time

import numpy as np

from nndl.callbacks import Callback
from nndl.data import get_CIFAR10_data
from nndl.models import build_model, load_model, save_model
from nndl.solver import Solver

num_training = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 2

# Channels-first float32 arrays with the mean training image subtracted.
data = get_CIFAR10_data(num_training=num_training, num_validation=1000, num_test=1000)
print({k: v.shape for k, v in data.items() if k.startswith(("X_", "y_"))})

model = build_model("convnet", num_filters=(16, 32, 64), hidden_dims=(), seed=0)


class EpochSummary(Callback):
    """One line per epoch from the logs the Solver passes to callbacks."""

    def on_epoch_end(self, solver, epoch, logs):
        print(
            f"epoch {epoch}/{solver.num_epochs}  loss {logs['loss']:.3f}  "
            f"train {logs['train_acc']:.3f}  val {logs['val_acc']:.3f}  {logs['elapsed']:.1f}s"
        )


solver = Solver(
    model,
    data,
    update_rule="adam",
    optim_config={"learning_rate": 1e-3},
    lr_decay=0.9,
    batch_size=64,
    num_epochs=epochs,
    verbose=False,
    callbacks=[EpochSummary()],
    seed=0,
)
start = time.perf_counter()
solver.train()  # ends with the best validation parameters in the model
print(f"best val acc {solver.best_val_acc:.3f} in {time.perf_counter() - start:.0f}s")

# Save the model with what prediction needs, load it back and score the test set.
save_model("convnet_cifar10.npz", model, extra={"class_names": data["class_names"].tolist()})
restored, extra = load_model("convnet_cifar10.npz")
scores = np.concatenate([restored.loss(data["X_test"][i : i + 200]) for i in range(0, 1000, 200)])
print(f"test acc {np.mean(scores.argmax(axis=1) == data['y_test']):.3f}")
print("first test images:", [extra["class_names"][c] for c in scores.argmax(axis=1)[:5]])
