# %% [markdown]
# # Lesson 9: the four stored parameters, the two modes, save and reload
#
# A BatchNorm layer stores four vectors of one value per feature, as the Keras guide lists them:
#
#     gamma, beta                       trainable: the optimizer learns them from gradients
#     moving_mean, moving_variance      not trainable: Eq. 5 and 6 update them in training
#                                       mode, and inference mode uses them
#
# (minigrad also stores num_batches_tracked, which momentum=None needs to resume its exact
# average after a reload; PyTorch keeps the same counter.) This lesson trains lesson 7's
# network briefly, then looks at each stored vector, at what each mode reads and writes, and
# saves and reloads the network, checking that inference gives identical output afterwards.
#
# Run: python lessons/09_stored_parameters.py   (a few seconds)

# %%
import numpy as np

import minigrad as mg
from minigrad import lesson
from minigrad.nn import functional as F
from minigrad.training import fit, paper_mlp

lesson.options("Lesson 9: the four stored parameters")  # this lesson takes seconds either way

data = mg.data.load_digits(seed=0)
x_train, y_train, x_test, y_test = data
model = paper_mlp("relu", batch_norm=True)
history = fit(model, data, learning_rate=0.5, steps=100, seed=0, eval_every=50)
print(f"trained 100 steps: test accuracy {history.final_accuracy:.1%}")
bn = model[1]  # the first BatchNorm layer

# %% [markdown]
# ## Trainable and non-trainable
# `named_weights()` lists everything the layer stores; `parameters()`, what an optimizer
# may change, holds only gamma and beta. The moving statistics never get a gradient.

# %%
parameter_ids = {id(p) for p in model.parameters()}
for name, weight in bn.named_weights():
    print(f"  {name:20s} shape {str(weight.shape):7s} {weight.dtype}  "
          f"{'trainable' if id(weight) in parameter_ids else 'not trainable'}")
assert {name for name, w in bn.named_weights() if id(w) in parameter_ids} == {"gamma", "beta"}

loss = F.softmax_cross_entropy(model(mg.Tensor(x_train[:60]), training=True), y_train[:60])
for parameter in model.parameters():
    parameter.grad = None  # fit() left the last step's gradients
loss.backward()
print(f"after backward: gamma.grad {'set' if bn.gamma.grad is not None else 'None'}, beta.grad "
      f"{'set' if bn.beta.grad is not None else 'None'}, moving_mean.grad {bn.moving_mean.grad}")
assert bn.gamma.grad is not None and bn.beta.grad is not None
assert bn.moving_mean.grad is None and bn.moving_variance.grad is None

# %% [markdown]
# ## Training mode and inference mode
# The same batch through the layer twice. Training mode normalizes with the batch's own
# statistics and moves the moving statistics (Eq. 5, 6); inference mode normalizes with
# the moving statistics and writes nothing. So the two outputs differ, and only the first
# call changes the stored state.

# %%
batch = mg.Tensor(x_test[:60])
hidden = model[0](batch)  # the first Dense's output: what the BatchNorm layer sees
saved = {name: w.numpy().copy() for name, w in bn.named_weights()}
with mg.no_grad():
    inference = bn(hidden, training=False).numpy()
unchanged = all(np.array_equal(w.numpy(), saved[name]) for name, w in bn.named_weights())
with mg.no_grad():
    training = bn(hidden, training=True).numpy()
moved = {name for name, w in bn.named_weights() if not np.array_equal(w.numpy(), saved[name])}
print(f"inference call changed nothing: {unchanged}; training call changed: {sorted(moved)}")
print(f"largest difference between the two outputs: {np.abs(training - inference).max():.3f}")
assert unchanged and moved == {"moving_mean", "moving_variance", "num_batches_tracked"}
assert np.abs(training - inference).max() > 1e-3
per_feature_mean = training.mean(axis=0)  # training mode: each feature of the batch is centred
print(f"training-mode output: per-feature batch mean at most {np.abs(per_feature_mean - bn.beta.numpy()).max():.1e} "
      "from beta (the normalized part averages to zero)")
np.testing.assert_allclose(per_feature_mean, bn.beta.numpy(), atol=1e-5)
bn.load_state_dict(saved)  # undo that demonstration update

# %% [markdown]
# The mode comes from the call's `training` flag, or, when it is None, from the module's
# mode: model.eval() switches every layer to inference, model.train() back. And as in Keras,
# a frozen layer (trainable=False) always runs in inference mode, even in training, so its
# moving statistics stay as they were: that is how fine-tuning keeps a pretrained BatchNorm.

# %%
model.eval()
with mg.no_grad():
    from_eval = model(batch).numpy()
    explicit = model(batch, training=False).numpy()
model.train()
np.testing.assert_array_equal(from_eval, explicit)
bn.trainable = False
before = bn.moving_mean.numpy().copy()
with mg.no_grad():
    model(batch, training=True)
assert np.array_equal(bn.moving_mean.numpy(), before) and not any(p is bn.gamma for p in model.parameters())
bn.trainable = True
print("eval() means inference; a frozen BatchNorm keeps its moving statistics and leaves parameters()")

# %% [markdown]
# ## Save and reload
# save_weights writes every stored vector (all four per BatchNorm layer, the counter, and
# the Dense kernels) to one .npz file. A fresh network, built from another seed, gives
# different outputs until it loads the file; then its inference output is bit-for-bit
# the same.

# %%
path = lesson.runs_dir("lesson09") / "digits_mlp.npz"
model.save_weights(path)
stored = np.load(path)
print(f"saved {len(stored.files)} arrays to {path.resolve()}; the first BatchNorm's: "
      f"{[k for k in stored.files if k.startswith('1.')]}")

mg.random.manual_seed(123)
fresh = paper_mlp("relu", batch_norm=True)
fresh.build((None, x_test.shape[1]))
with mg.no_grad():
    original = model(mg.Tensor(x_test), training=False).numpy()
    before_load = fresh(mg.Tensor(x_test), training=False).numpy()
    fresh.load_weights(path)
    after_load = fresh(mg.Tensor(x_test), training=False).numpy()
print(f"largest output difference before loading {np.abs(before_load - original).max():.3f}, "
      f"after loading {np.abs(after_load - original).max():.1e}")
assert np.abs(before_load - original).max() > 0.1
np.testing.assert_array_equal(after_load, original)

# %% [markdown]
# A file that does not fit the network is refused before anything is written, with an
# error that names the weight and the file.

# %%
narrow = paper_mlp("relu", batch_norm=True, hidden=(50, 50, 50))
narrow.build((None, x_test.shape[1]))
try:
    narrow.load_weights(path)
except ValueError as error:
    print(f"loading into a narrower network: ValueError: {error}")
else:
    raise AssertionError("a file of the wrong shapes should be refused")
print("So a BatchNorm layer is four vectors per feature: gamma and beta, which the optimizer "
      "trains, and the moving mean and variance, which training mode updates and inference mode "
      "uses; all four travel in the weights file.")
