# %% [markdown]
# # Lesson 10: the same training on the GPU (CuPy)
#
# minigrad has one code path for NumPy and CuPy: every operation asks the array it was
# given for its module (numpy or cupy) and calls the same functions on it. So lesson 7's
# network trains on a GPU with one change, the backend:
#
#     with mg.use_backend("cupy"):
#         history = fit(paper_mlp("relu", batch_norm=True), data, learning_rate=0.5, steps=700)
#
# Weights are drawn on the CPU from the same seeded generator and then moved, so both
# backends start from identical weights. The arithmetic is float32 on both, but the GPU sums
# in a different order, so the runs drift apart by rounding: the results agree closely, not
# bit for bit. The lesson checks that, and that BatchNorm's advantage holds on the GPU.
#
# Without a GPU (or without CuPy) it says so and exits 0. `--backend numpy` runs the same
# code on NumPy instead, which is how the tests exercise it on machines without a GPU.
#
# Run: python lessons/10_training_on_the_gpu.py   (seconds to a minute; --quick: seconds)

# %%
import numpy as np

import minigrad as mg
from minigrad import lesson
from minigrad.backend import cupy_unavailable_reason
from minigrad.training import fit, paper_mlp

options = lesson.options("Lesson 10: training on the GPU", lambda parser: parser.add_argument(
    "--backend", default="cupy", choices=["cupy", "numpy"],
    help="the backend to compare with NumPy (default cupy: the GPU)"))
QUICK, BACKEND = options.quick, options.backend

reason = cupy_unavailable_reason() if BACKEND == "cupy" else None
READY = reason is None  # without a GPU, the cells below say so and train nothing
if not READY:
    print(f"No GPU backend on this machine, so this lesson has nothing to run: {reason}")
    print("The cells below train nothing, and the script exits 0. On a machine with an NVIDIA GPU: "
          "pip install -e '.[gpu]', then run it again.")

# %% [markdown]
# ## Train on both backends from the same seed

# %%
if READY:
    STEPS = 200 if QUICK else 700
    TARGET = 0.95
    data = mg.data.load_digits(seed=0)
    runs = {}
    for backend in ("numpy", BACKEND):
        for batch_norm in (False, True):
            model = paper_mlp("relu", batch_norm)
            with mg.use_backend(backend):
                runs[backend, batch_norm] = history = fit(model, data, learning_rate=0.5, steps=STEPS, seed=0,
                                                          eval_every=20)
            assert model[0].kernel.backend == backend, "the weights should live on the chosen backend"
            reached = history.steps_to(TARGET)
            print(f"{backend:5s} {'with' if batch_norm else 'without':7s} BatchNorm: {TARGET:.0%} at step "
                  f"{reached if reached is not None else '-':>4}, final {history.final_accuracy:.1%}, "
                  f"{1000 * history.seconds / STEPS:.2f} ms per step (evaluation included)")

# %% [markdown]
# ## The claims, on the chosen backend
# BatchNorm reaches the target in several times fewer steps there too, and the two
# backends agree to within rounding: the same early accuracy, and final accuracies within
# two percentage points for the BatchNorm network.
#
# About speed: a batch of 60 through 100-unit layers is far too little work for a GPU; each
# step is a few dozen tiny kernel launches, so it is no faster than the CPU here. GPUs pay
# off on large layers and batches: see scripts/benchmark.py for BatchNorm on (1024, 1024)
# and (64, 32, 28, 28).

# %%
if READY:
    with_bn, without_bn = runs[BACKEND, True], runs[BACKEND, False]
    assert with_bn.steps_to(TARGET) is not None
    assert 3 * with_bn.steps_to(TARGET) <= (without_bn.steps_to(TARGET) or STEPS + 1)
    for batch_norm in (False, True):
        first = [runs[b, batch_norm].test_accuracy[1] for b in ("numpy", BACKEND)]
        print(f"{'with' if batch_norm else 'without':7s} BatchNorm: test accuracy after 20 steps "
              f"{first[0]:.1%} on numpy, {first[1]:.1%} on {BACKEND}")
        assert abs(first[0] - first[1]) < 0.02
    gap = abs(runs["numpy", True].final_accuracy - with_bn.final_accuracy)
    print(f"final accuracy with BatchNorm differs by {gap:.1%} between the backends")
    assert gap < 0.02
    assert np.isfinite(with_bn.loss[1:]).all()
    print(f"So one code path trains the same network on {BACKEND} as on NumPy: the same early accuracy, "
          "final accuracies within rounding, and BatchNorm's several-fold advantage intact.")
