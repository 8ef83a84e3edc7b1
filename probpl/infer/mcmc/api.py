"""The :class:`MCMC` driver: runs a kernel's chains (sequentially, in worker processes, or
vectorized as one batch), stores the draws and reports samples, diagnostics and summaries.

Every chain gets its own seed, drawn from the global generator when ``run`` starts, so
sequential and parallel runs give the same draws for the same global seed.  Draws are
stored as flat unconstrained vectors and mapped to constrained values (plus deterministic
sites) only when asked for.
"""

import copy
import io
import queue as _queue
import warnings

import torch

from probpl.infer.mcmc import util as _util
from probpl.infer.mcmc.potential import FlatLayout, SiteSpec


def _run_chain(kernel, seed, warmup_steps, num_samples, num_chains, args, kwargs,
               initial_params, hook_fn, progbar, continue_state=None):
    """Run one kernel (one chain, or a batch of chains) and return its flat draws, its
    statistics, the layout of the flat draws and its final state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        run = _run_flat if getattr(kernel, "_flat_state", False) else _run_generic
        return run(kernel, warmup_steps, num_samples, num_chains, args, kwargs,
                   initial_params, hook_fn, progbar, continue_state)


def _tick(kernel, progbar, i, total):
    if progbar is not None:
        progbar.update(1)
        if i % 20 == 0 or i == total - 1:
            progbar.set_postfix(kernel.logging(), refresh=False)


def _run_flat(kernel, warmup_steps, num_samples, num_chains, args, kwargs, initial_params,
              hook_fn, progbar, continue_state):
    # kernels with a flat batched state (HMC, NUTS): draws are read off the state
    if continue_state is None:
        kernel.setup(warmup_steps, *args, num_chains=num_chains,
                     initial_params=initial_params, **kwargs)
        total = warmup_steps + num_samples
    else:
        kernel._state = continue_state
        kernel._t = kernel._warmup_steps
        total = num_samples
        warmup_steps = 0
    draws, diverging, accept, depth = [], [], [], []
    for i in range(total):
        info = kernel.step()
        stage = "Warmup" if i < warmup_steps else "Sample"
        if i == warmup_steps - 1:
            kernel.end_warmup()
        if stage == "Sample":
            draws.append(kernel._state.z)
            diverging.append(info.diverging)
            accept.append(info.accept_prob)
            depth.append(info.tree_depth)
        if hook_fn is not None:
            hook_fn(kernel, kernel._layout.unpack(kernel._state.z), stage, i)
        _tick(kernel, progbar, i, total)
    z = torch.stack(draws, 1) if draws else kernel._state.z.new_zeros(num_chains, 0, 0)
    stats = {
        "diverging": torch.stack(diverging, 1) if diverging else None,
        "accept_prob": torch.stack(accept, 1) if accept else None,
        "tree_depth": torch.stack(depth, 1) if depth else None,
        "step_size": kernel._state.step_size,
    }
    return z, stats, kernel._layout, kernel._state


def _generic_layout(kernel, params):
    compiled = getattr(kernel, "_compiled", None)
    if compiled is not None:
        return compiled.layout
    transforms = getattr(kernel, "transforms", None) or {}
    specs, offset = [], 0
    for name, v in params.items():
        t = transforms[name].inv if name in transforms else _Identity()
        specs.append(SiteSpec(name, offset, v.numel(), v.shape, t))
        offset += v.numel()
    return FlatLayout(specs)


def _run_generic(kernel, warmup_steps, num_samples, num_chains, args, kwargs, initial_params,
                 hook_fn, progbar, continue_state):
    # any kernel with Pyro's interface: setup, initial_params, sample(params) -> params
    if num_chains != 1:
        raise ValueError(f"{type(kernel).__name__} runs one chain at a time")
    if continue_state is None:
        if initial_params is not None:
            kernel.initial_params = initial_params
        kernel.setup(warmup_steps, *args, **kwargs)
        params = kernel.initial_params
        total = warmup_steps + num_samples
    else:
        params = continue_state
        total = num_samples
        warmup_steps = 0
    if params is None:
        raise ValueError(f"{type(kernel).__name__}.setup() left no initial_params")
    layout = None
    draws = []
    for i in range(total):
        params = kernel.sample(params)
        stage = "Warmup" if i < warmup_steps else "Sample"
        if i == warmup_steps - 1:
            kernel.end_warmup()
        if stage == "Sample":
            if layout is None:
                layout = _generic_layout(kernel, params)
            draws.append(layout.pack({k: v.detach() for k, v in params.items()}))
        if hook_fn is not None:
            hook_fn(kernel, params, stage, i)
        _tick(kernel, progbar, i, total)
    z = torch.stack(draws).unsqueeze(0)
    stats = {"diverging": None, "accept_prob": None, "tree_depth": None, "step_size": None}
    return z, stats, layout, params


class _Identity:
    def __call__(self, x):
        return x

    def inv(self, x):
        return x


def _worker(chain, kernel, seed, warmup_steps, num_samples, args, kwargs, initial_params,
            result_q):
    try:
        out = _run_chain(kernel, seed, warmup_steps, num_samples, 1, args, kwargs,
                         initial_params, None, None)
        # tensors in a queue travel as shared-memory handles served by this process, which
        # is about to exit: send plain bytes instead
        buf = io.BytesIO()
        torch.save(out[:3], buf)
        result_q.put((chain, None, buf.getvalue()))
    except BaseException as e:  # noqa: BLE001 - reported to the parent with its type
        import traceback

        tb = "".join(traceback.format_exception(e)[-4:])
        result_q.put((chain, f"{type(e).__name__}: {e}\n{tb}", None))


class MCMC:
    """Run an MCMC kernel.

    :param kernel: an :class:`~probpl.infer.mcmc.mcmc_kernel.MCMCKernel` (e.g. ``NUTS``).
    :param int num_samples: draws kept per chain.
    :param int warmup_steps: adaptation iterations per chain (default ``num_samples``).
    :param dict initial_params: unconstrained initial values (leading chain dimension when
        ``num_chains > 1``).
    :param int num_chains: number of chains.
    :param callable hook_fn: called as ``hook_fn(kernel, params, stage, i)`` each iteration.
    :param str mp_context: multiprocessing start method for ``"parallel"`` (default spawn).
    :param bool disable_progbar: hide the progress bars.
    :param str chain_method: ``"sequential"``, ``"parallel"`` (worker processes) or
        ``"vectorized"`` (all chains as one batch; needs a kernel that supports it).
    :param float timeout: seconds to wait for a parallel worker.
    """

    def __init__(self, kernel, num_samples, warmup_steps=None, initial_params=None,
                 num_chains=1, hook_fn=None, mp_context=None, disable_progbar=False,
                 disable_validation=True, transforms=None, save_params=None,
                 chain_method="sequential", timeout=None):
        if chain_method not in ("sequential", "parallel", "vectorized"):
            raise ValueError(
                "chain_method must be 'sequential', 'parallel' or 'vectorized', "
                f"got {chain_method!r}"
            )
        if num_samples < 1 or num_chains < 1:
            raise ValueError(f"need num_samples >= 1 and num_chains >= 1, got "
                             f"{num_samples} and {num_chains}")
        if chain_method == "vectorized" and not kernel.supports_vectorized_chains:
            raise ValueError(f"{type(kernel).__name__} does not support vectorized chains")
        self.kernel = kernel
        self.num_samples = num_samples
        self.warmup_steps = num_samples if warmup_steps is None else warmup_steps
        self.initial_params = initial_params
        self.num_chains = num_chains
        self.hook_fn = hook_fn
        self.mp_context = mp_context or "spawn"
        self.disable_progbar = disable_progbar
        self.chain_method = chain_method
        self.timeout = timeout
        self._z = None
        self._cache = {}
        self._kernels = None
        self._states = None

    # ----- running -----

    def _chain_params(self, c):
        if self.initial_params is None or self.num_chains == 1:
            return self.initial_params
        return {k: v[c] for k, v in self.initial_params.items()}

    def _progbar(self, c):
        if self.disable_progbar:
            return None
        from tqdm import tqdm

        total = self.num_samples + (0 if self._states is not None else self.warmup_steps)
        return tqdm(total=total, desc=f"Chain {c}" if self.num_chains > 1 else "Sample",
                    position=c, leave=True, mininterval=0.5)

    def run(self, *args, **kwargs):
        """Run all chains.  Calling ``run`` again continues each chain from its last state,
        with the adapted step size and metric and no new warm-up, replacing the draws."""
        continuing = self._states is not None
        if continuing and (args or kwargs) and (args, kwargs) != self._run_args:
            raise ValueError("run() continues a finished run: call it with the same arguments")
        self._run_args = (args, kwargs)
        seeds = torch.randint(0, 2**62, (self.num_chains,)).tolist()
        if self.chain_method == "vectorized":
            results = [self._run_vectorized(seeds[0], args, kwargs, continuing)]
        elif self.chain_method == "parallel" and not continuing:
            results = self._run_parallel(seeds, args, kwargs)
        else:
            results = self._run_sequential(seeds, args, kwargs, continuing)
        self._z = torch.cat([r[0] for r in results], 0)
        self._stats = {
            k: (torch.cat([r[1][k] for r in results], 0) if results[0][1][k] is not None
                else None)
            for k in results[0][1]
        }
        self._cache = {}

    def _run_vectorized(self, seed, args, kwargs, continuing):
        if self._kernels is None:
            self._kernels = [self.kernel]
        bar = self._progbar(0)
        try:
            state = self._states[0] if continuing else None
            z, stats, layout, state = _run_chain(
                self.kernel, seed, self.warmup_steps, self.num_samples, self.num_chains, args,
                kwargs, self.initial_params, self.hook_fn, bar, state)
        finally:
            if bar is not None:
                bar.close()
        self._states = [state]
        self._layout = layout
        return z, stats

    def _run_sequential(self, seeds, args, kwargs, continuing):
        if self._kernels is None:
            self._kernels = [self.kernel] + [
                copy.copy(self.kernel) for _ in range(self.num_chains - 1)
            ]
        results, states = [], []
        for c, kernel in enumerate(self._kernels):
            bar = self._progbar(c)
            try:
                state = self._states[c] if continuing else None
                z, stats, layout, state = _run_chain(
                    kernel, seeds[c], self.warmup_steps, self.num_samples, 1, args, kwargs,
                    self._chain_params(c), self.hook_fn, bar, state)
            finally:
                if bar is not None:
                    bar.close()
            results.append((z, stats))
            states.append(state)
        self._states = states
        self._layout = layout
        return results

    def _run_parallel(self, seeds, args, kwargs):
        import multiprocessing as mp
        import time

        ctx = mp.get_context(self.mp_context)
        result_q = ctx.Queue()
        procs = []
        for c in range(self.num_chains):
            p = ctx.Process(target=_worker, args=(
                c, self.kernel, seeds[c], self.warmup_steps, self.num_samples, args, kwargs,
                self._chain_params(c), result_q), daemon=True)
            p.start()
            procs.append(p)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        try:
            results = {}
            while len(results) < self.num_chains:
                try:
                    chain, error, payload = result_q.get(timeout=0.5)
                except _queue.Empty:
                    # a worker that died without reporting (killed, crashed) never will
                    dead = [c for c, p in enumerate(procs)
                            if c not in results and p.exitcode is not None]
                    if dead:
                        time.sleep(0.5)  # its result may still be in the pipe
                        if result_q.empty():
                            raise RuntimeError(
                                f"MCMC worker for chain {dead[0]} exited with code "
                                f"{procs[dead[0]].exitcode} without a result"
                            ) from None
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(
                            f"MCMC workers gave no result within {self.timeout} s"
                        ) from None
                    continue
                if error is not None:
                    raise RuntimeError(f"MCMC worker for chain {chain} failed: {error}")
                results[chain] = torch.load(io.BytesIO(payload), weights_only=False)
        finally:
            for p in procs:
                p.join(timeout=1)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=1)
        self._layout = results[0][2]
        if getattr(self.kernel, "_flat_state", False):
            # compiled models do not travel back from the workers: compile once here for
            # the constrained values and deterministic sites
            with torch.random.fork_rng(devices=[]):
                self.kernel._build(1, args, kwargs, self._chain_params(0))
        self._states = None
        return [(results[c][0], results[c][1]) for c in range(self.num_chains)]

    # ----- results -----

    def _compiled(self):
        kernel = (self._kernels or [self.kernel])[0]
        return getattr(kernel, "_compiled", None)

    def _all_samples(self):
        if "samples" not in self._cache:
            if self._z is None:
                raise RuntimeError("call MCMC.run() before asking for samples")
            compiled = self._compiled()
            if compiled is not None:
                self._cache["samples"] = compiled.constrained_samples(self._z)
            else:
                layout = getattr(self, "_layout", None) or FlatLayout([])
                self._cache["samples"] = {k: v.detach()
                                          for k, v in layout.constrain(self._z).items()}
        return self._cache["samples"]

    def get_samples(self, num_samples=None, group_by_chain=False):
        """Constrained draws of every latent and deterministic site.

        :param int num_samples: a random subset of this many draws (over all chains).
        :param bool group_by_chain: keep the leading chain dimension.
        :returns: site name to tensor ``(chains, samples, ...)`` or ``(chains * samples,
            ...)``.
        """
        samples = self._all_samples()
        if group_by_chain:
            if num_samples is not None:
                raise ValueError("num_samples cannot be combined with group_by_chain=True")
            return dict(samples)
        flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in samples.items()}
        if num_samples is not None:
            total = next(iter(flat.values())).shape[0]
            idx = torch.randperm(total)[:num_samples]
            flat = {k: v[idx] for k, v in flat.items()}
        return flat

    def diagnostics(self):
        """Per-site ESS and split R-hat, and per-chain divergences (iteration indices),
        acceptance rate, final step size and mean tree depth."""
        diag = _util.diagnostics(self.get_samples(group_by_chain=True))
        stats = self._stats
        chains = range(self._z.shape[0])
        if stats["diverging"] is None:
            return diag
        diag["divergences"] = {
            f"chain {c}": torch.nonzero(stats["diverging"][c]).reshape(-1).tolist()
            for c in chains
        }
        diag["acceptance rate"] = {
            f"chain {c}": float(stats["accept_prob"][c].mean()) for c in chains
        }
        diag["step size"] = {f"chain {c}": float(stats["step_size"][c]) for c in chains}
        diag["tree depth"] = {
            f"chain {c}": float(stats["tree_depth"][c].double().mean()) for c in chains
        }
        return diag

    def summary(self, prob=0.9):
        """Print mean, std, median, credible interval, n_eff and r_hat of every site."""
        _util.print_summary(self.get_samples(group_by_chain=True), prob=prob)
        if self._stats["diverging"] is not None:
            print(f"Number of divergences: {int(self._stats['diverging'].sum())}")

    def to_inference_data(self):
        """The draws as an ArviZ ``InferenceData`` with posterior and log_likelihood
        groups."""
        try:
            with warnings.catch_warnings():
                # ArviZ announces its own API changes on import
                warnings.simplefilter("ignore", FutureWarning)
                import arviz
        except ImportError as e:
            raise ImportError("to_inference_data needs arviz: pip install arviz") from e
        posterior = {k: v.detach().cpu().numpy()
                     for k, v in self.get_samples(group_by_chain=True).items()}
        groups = {"posterior": posterior}
        compiled = self._compiled()
        if compiled is not None and compiled.observed_names:
            groups["log_likelihood"] = {k: v.cpu().numpy()
                                        for k, v in compiled.log_likelihood(self._z).items()}
        return arviz.from_dict(**groups)

    to_arviz = to_inference_data
