"""The convolution workloads of scripts/benchmark.py (section 5), kept apart to keep each file small.

5. Conv2D forward + backward (3 x 3, padding "same", float32) on (60, 8, 8, 1) -> 16 channels
   (the digits lesson's first layer) and (64, 28, 28, 32) -> 64 (an MNIST-sized middle layer),
   and one SGD training step of the convnet lesson's network on a batch of 60 digits:
   Conv(16, 3, same), BatchNorm, ReLU, Conv(32, 3, same), BatchNorm, ReLU, MaxPool(2), Flatten,
   Dense(10). PyTorch runs the same in NCHW, with explicit padding 1 (equal to TensorFlow's
   "same" for an odd kernel at stride 1).
"""

from __future__ import annotations

CONV_SHAPES = [((60, 8, 8, 1), 16), ((64, 28, 28, 32), 64)]
CONVNET_BATCH = 60


def conv_inputs(shape, filters):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    kernel = (rng.normal(size=(3, 3, shape[-1], filters)) * 0.1).astype(np.float32)
    grad = rng.normal(size=shape[:-1] + (filters,)).astype(np.float32)
    return x, kernel, grad


def minigrad_conv(shape, filters):
    """Returns (step, outputs): forward + backward; outputs gives (y, dx, dkernel) as NHWC NumPy."""
    import minigrad as mg
    from minigrad.nn import functional as F

    x_values, kernel_values, grad_values = conv_inputs(shape, filters)
    x, kernel = mg.Tensor(x_values, requires_grad=True), mg.Tensor(kernel_values, requires_grad=True)
    grad = mg.Tensor(grad_values)
    result = {}

    def step():
        x.grad = kernel.grad = None
        result["y"] = y = F.conv2d(x, kernel, padding="same")
        y.backward(grad)

    def outputs():
        step()
        return result["y"].numpy(), x.grad.numpy(), kernel.grad.numpy()

    return step, outputs


def torch_conv(shape, filters, device):
    import torch

    x_values, kernel_values, grad_values = conv_inputs(shape, filters)
    x = torch.tensor(x_values.transpose(0, 3, 1, 2).copy(), device=device, requires_grad=True)
    kernel = torch.tensor(kernel_values.transpose(3, 2, 0, 1).copy(), device=device, requires_grad=True)
    grad = torch.tensor(grad_values.transpose(0, 3, 1, 2).copy(), device=device)
    result = {}

    def step():
        x.grad = kernel.grad = None
        result["y"] = y = torch.nn.functional.conv2d(x, kernel, padding=1)
        y.backward(grad)

    def outputs():
        step()
        return (result["y"].detach().cpu().numpy().transpose(0, 2, 3, 1), x.grad.cpu().numpy().transpose(0, 2, 3, 1),
                kernel.grad.cpu().numpy().transpose(2, 3, 1, 0))

    return step, outputs


def digits_batch():
    import numpy as np

    from minigrad.data import load_digits

    x_train, y_train, _, _ = load_digits(seed=0)
    return x_train[:CONVNET_BATCH].reshape(-1, 8, 8, 1).astype(np.float32), y_train[:CONVNET_BATCH]


def minigrad_convnet():
    import minigrad as mg
    from minigrad.nn import functional as F

    mg.manual_seed(0)
    nn = mg.nn
    model = nn.Sequential(nn.Conv2D(16, 3, padding="same", use_bias=False), nn.BatchNorm(), nn.ReLU(),
                          nn.Conv2D(32, 3, padding="same", use_bias=False), nn.BatchNorm(), nn.ReLU(),
                          nn.MaxPooling2D(2), nn.Flatten(), nn.Dense(10))
    x_values, labels = digits_batch()
    x = mg.Tensor(x_values)
    model.build(x.shape)
    optimizer = mg.optim.SGD(model.parameters(), learning_rate=0.05)

    def step():
        optimizer.zero_grad()
        F.softmax_cross_entropy(model(x, training=True), labels).backward()
        optimizer.step()

    return step


def torch_convnet(device):
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10)).to(device)
    x_values, labels = digits_batch()
    x = torch.tensor(x_values.transpose(0, 3, 1, 2).copy(), device=device)
    labels = torch.tensor(labels, device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

    def step():
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), labels).backward()
        optimizer.step()

    return step


def run(clock, repeats, torch, device, report, check_same_conv) -> None:
    """Section 5 of the benchmark: the rows above, minigrad and PyTorch taking turns."""
    print("\n5. Conv2D forward + backward, 3x3 same, float32; and one training step of the convnet lesson")
    for shape, filters in CONV_SHAPES:
        label = f"{shape} -> {filters}"
        step, outputs = minigrad_conv(shape, filters)
        works = {"minigrad": step}
        if torch is not None:
            works["PyTorch"], reference_outputs = torch_conv(shape, filters, device)
            check_same_conv(label, outputs(), reference_outputs())
        report(label, clock.medians(works, repeats), "ms", 1e3)
    works = {"minigrad": minigrad_convnet()}
    if torch is not None:
        works["PyTorch"] = torch_convnet(device)
    report(f"convnet step, batch {CONVNET_BATCH}", clock.medians(works, repeats), "ms", 1e3)
