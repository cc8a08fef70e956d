"""One context shared by 8 Python threads, each making several calls of every loss at once: the
results are the bits of the same calls made from one thread, and errors in one thread do not
disturb the others."""

import threading

import numpy as np
import pytest

import npref
from common import DEVICES, context, registry

THREADS = 8
CALLS = 4


def _work():
    """(loss, pred, target, kwargs) for every loss with a reference, a few sizes."""
    rng = np.random.default_rng(11)
    out = []
    for name, info in registry().items():
        if not npref.has_reference(name):
            continue
        for shape in ([(16, 300), (3, 5)] if info["row_wise"] else [(20_001,), (7, 3)]):
            classes = info["takes_classes"] and shape[0] == 16
            out.append((name, *npref.inputs(name, shape, rng, classes=classes)))
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_threads_share_a_context(device):
    ctx = context(device)
    work = _work()
    want = [ctx.compute(name, p, t) for name, p, t in work]
    got = {}
    errors = []
    barrier = threading.Barrier(THREADS)

    def run(k):
        try:
            barrier.wait()
            for call in range(CALLS):
                for i, (name, p, t) in enumerate(work):
                    got[(k, call, i)] = ctx.compute(name, p, t)
                # A refused call in between: a ValueError here, nothing elsewhere.
                try:
                    ctx.compute("mse", p[:1], t[:2])
                except ValueError:
                    pass
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert len(got) == THREADS * CALLS * len(work)
    for (k, call, i), r in got.items():
        w = want[i]
        name = work[i][0]
        assert np.float32(r.value).view(np.uint32) == np.float32(w.value).view(np.uint32), name
        assert np.array_equal(r.grad.view(np.uint32), w.grad.view(np.uint32)), name
