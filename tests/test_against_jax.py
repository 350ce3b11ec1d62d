"""The engine against an independent autodiff system: JAX (installed with the test extra,
which Keras's NumPy backend imports). Gradients and Hessian-vector products of a small
network's loss must agree to float64 rounding."""

import numpy as np
import pytest

import minigrad as mg
from conftest import normal

jax = pytest.importorskip("jax", reason="jax comes with the test extra: pip install -e '.[test]'")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

LABELS = np.array([1, 0, 2, 2, 1])


def loss(xs, w1, b1, w2, y, lib):
    """A two-layer MLP with softmax cross-entropy, in either minigrad or jax.numpy."""
    hidden = (xs @ w1 + b1)
    hidden = hidden.relu() if lib is mg else jnp.maximum(hidden, 0)
    logits = hidden @ w2
    if lib is mg:
        top = logits.max(axis=1, keepdims=True)
        lse = (logits - top).exp().sum(axis=1, keepdims=True).log() + top
        picked = logits[np.arange(len(y)), y]
        return (lse.reshape(-1) - picked).mean() + (w1 * w1).sum() * 0.01
    lse = jax.nn.logsumexp(logits, axis=1)
    return (lse - logits[jnp.arange(len(y)), y]).mean() + (w1 * w1).sum() * 0.01


def test_gradients_and_hessian_vector_products_match_jax(backend):
    arrays = [normal((5, 4)), normal((4, 6), 1), normal(6, 2), normal((6, 3), 3)]
    direction = [normal(a.shape, 10 + i) for i, a in enumerate(arrays)]

    params = [mg.Tensor(a, requires_grad=True) for a in arrays]
    value = loss(*params, LABELS, mg)
    grads = mg.grad(value, params, create_graph=True)
    along = sum(((g * mg.Tensor(d)).sum() for g, d in zip(grads, direction)), mg.Tensor(0.0, dtype=np.float64))
    hvps = mg.grad(along, params)

    def jax_loss(*ps):
        return loss(*ps, jnp.asarray(LABELS), jnp)

    jax_arrays = [jnp.asarray(a) for a in arrays]
    jax_grads = jax.grad(jax_loss, argnums=(0, 1, 2, 3))(*jax_arrays)
    _, jax_hvps = jax.jvp(
        lambda *ps: jax.grad(jax_loss, argnums=(0, 1, 2, 3))(*ps), tuple(jax_arrays),
        tuple(jnp.asarray(d) for d in direction),
    )
    np.testing.assert_allclose(value.item(), float(jax_loss(*jax_arrays)), rtol=1e-12)
    for ours, theirs in zip(grads, jax_grads):
        np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), rtol=1e-10, atol=1e-12)
    for ours, theirs in zip(hvps, jax_hvps):
        np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), rtol=1e-10, atol=1e-12)
