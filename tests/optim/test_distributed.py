"""Data-parallel SVI: two gloo processes on loopback take one step whose
averaged gradient must equal single-process SVI on the union of their shards."""

import os
import socket
import subprocess
import sys

import torch

import probpl
from probpl.infer import SVI, Trace_ELBO
from probpl.optim import SGD
from probpl.optim.distributed import shard_indices

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
import distributed_worker as worker  # noqa: E402


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gradients_equal_single_process(tmp_path):
    out = str(tmp_path / "params.pt")
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.join(HERE, "distributed_worker.py"), str(r), "2", str(port),
             out],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        for r in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=60)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)
    distributed = torch.load(out, weights_only=False)

    # Single process, same global minibatch (both shards), same guide draws.
    x, y = worker.data()
    gen = torch.Generator().manual_seed(3)
    full = torch.cat([shard_indices(len(x), 20, rank=r, world_size=2,
                                    generator=torch.Generator().manual_seed(3)) for r in range(2)])
    assert torch.equal(full, torch.randperm(40, generator=gen)[:20])
    probpl.set_rng_seed(7)
    svi = SVI(worker.model, worker.guide, SGD({"lr": 1.0}), Trace_ELBO())
    svi.step(x, y, full)
    single = {k: v.detach() for k, v in probpl.get_param_store().named_parameters()}
    assert single.keys() == distributed.keys()
    for k in single:
        assert torch.allclose(single[k], distributed[k], rtol=1e-10, atol=1e-12), k
