"""Grad mode belongs to a thread, and no_grad / enable_grad decorate functions and generators."""

import threading

import pytest

import minigrad as mg

TIMEOUT = 10  # seconds; a step that waits longer means the threads deadlocked


class Worker:
    """A thread running `body`; join() re-raises in the caller what the thread raised."""

    def __init__(self, body):
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(body,), daemon=True)
        self.thread.start()

    def _run(self, body):
        try:
            body()
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            self.error = error

    def join(self):
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the worker thread did not finish"
        if self.error is not None:
            raise self.error


def wait(event):
    assert event.wait(TIMEOUT), "a step of the interleaving never happened"


def records(x):
    """Whether an operation on x, run now in this thread, records the graph."""
    return (x * 2).requires_grad


def test_a_no_grad_block_in_another_thread_leaves_this_thread_recording():
    x = mg.Tensor([1.0], requires_grad=True)
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def body():
        with mg.no_grad():
            seen["worker"] = (mg.is_grad_enabled(), records(x))
            inside.set()
            wait(release)

    worker = Worker(body)
    try:
        wait(inside)
        assert mg.is_grad_enabled() and records(x), "the worker's no_grad reached this thread"
    finally:
        release.set()
        worker.join()
    assert seen["worker"] == (False, False)


def test_interleaved_no_grad_blocks_in_two_threads_restore_each_threads_mode():
    # The order that a single global mode cannot survive: A enters, B enters, A leaves, B
    # leaves. B saved A's "off" as its previous mode, so it would switch recording off for good.
    x = mg.Tensor([1.0], requires_grad=True)
    a_in, b_in, a_out, b_out = (threading.Event() for _ in range(4))
    seen = {}

    def thread_a():
        with mg.no_grad():
            a_in.set()
            wait(b_in)
        seen["a after its block"] = (mg.is_grad_enabled(), records(x))
        a_out.set()

    def thread_b():
        wait(a_in)
        with mg.no_grad():
            b_in.set()
            wait(a_out)
            seen["b inside, a done"] = (mg.is_grad_enabled(), records(x))
        seen["b after its block"] = (mg.is_grad_enabled(), records(x))
        b_out.set()

    workers = [Worker(thread_a), Worker(thread_b)]
    for worker in workers:
        worker.join()
    assert b_out.is_set()
    assert seen == {
        "a after its block": (True, True),
        "b inside, a done": (False, False),
        "b after its block": (True, True),
    }
    assert mg.is_grad_enabled() and records(x)


def test_a_new_thread_starts_with_grad_enabled():
    seen = []
    with mg.no_grad():
        worker = Worker(lambda: seen.append(mg.is_grad_enabled()))
        worker.join()
        assert not mg.is_grad_enabled()
    assert seen == [True]


def test_a_decorated_function_restores_the_mode_after_recursive_calls():
    @mg.no_grad()
    def depth(n):
        return depth(n - 1) if n else mg.is_grad_enabled()

    assert depth(3) is False
    assert mg.is_grad_enabled()
    assert depth.__name__ == "depth"


def test_no_grad_on_a_generator_function_applies_while_its_body_runs():
    x = mg.Tensor([1.0, 2.0], requires_grad=True)

    @mg.no_grad()
    def doubles(t, n):
        for _ in range(n):
            yield t * 2, mg.is_grad_enabled()
        return "done"

    steps = doubles(x, 2)
    assert mg.is_grad_enabled()
    out, mode = next(steps)
    assert (out.requires_grad, mode) == (False, False)
    assert mg.is_grad_enabled() and records(x), "the caller's mode must be back between yields"
    out, mode = next(steps)
    assert (out.requires_grad, mode) == (False, False)
    with pytest.raises(StopIteration) as stopped:
        next(steps)
    assert stopped.value.value == "done"
    assert mg.is_grad_enabled()


def test_enable_grad_on_a_generator_inside_no_grad():
    x = mg.Tensor([1.0], requires_grad=True)

    @mg.enable_grad()
    def recorded(t):
        yield t * 2
        yield t * 3

    with mg.no_grad():
        steps = recorded(x)
        assert next(steps).requires_grad
        assert not mg.is_grad_enabled() and not records(x)
        assert next(steps).requires_grad
        assert not mg.is_grad_enabled()
    assert mg.is_grad_enabled()


def test_a_decorated_generator_passes_send_throw_and_close_through_in_its_mode():
    log = []

    @mg.no_grad()
    def echo():
        try:
            while True:
                try:
                    received = yield
                    log.append(("got", received, mg.is_grad_enabled()))
                except ValueError as error:
                    log.append(("caught", str(error), mg.is_grad_enabled()))
        finally:
            log.append(("closed", mg.is_grad_enabled()))

    steps = echo()
    next(steps)
    steps.send(7)
    steps.throw(ValueError("boom"))
    steps.close()
    assert log == [("got", 7, False), ("caught", "boom", False), ("closed", False)]
    assert mg.is_grad_enabled()
