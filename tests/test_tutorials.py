"""Every tutorial notebook executes without error in smoke mode.

Each notebook runs in a fresh ``python3`` kernel on an in-memory copy (the
committed file is never rewritten), with ``PROBPL_TUTORIAL_SMOKE=1`` so that it
takes few steps, ``OMP_NUM_THREADS=1``, and ``tutorial/`` as working directory.
A cell that raises fails the test with the cell's traceback.
"""

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TUTORIAL = Path(__file__).resolve().parent.parent / "tutorial"
NOTEBOOKS = sorted(TUTORIAL.glob("*.ipynb"))
CELL_TIMEOUT = 300

pytestmark = [
    # jupyter_client and jupyter_core warn about their own deprecations and
    # platform paths when a kernel starts; they say nothing about probpl.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:jupyter_client"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:jupyter_core"),
    pytest.mark.filterwarnings("ignore:Jupyter is migrating its paths:DeprecationWarning"),
    # zmq's asyncio integration warns about the Proactor loop on Windows only.
    pytest.mark.filterwarnings("ignore::RuntimeWarning:zmq"),
]


def _kernel_env():
    env = dict(os.environ)
    env.update(
        PROBPL_TUTORIAL_SMOKE="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TQDM_DISABLE="1",
        MPLBACKEND="module://matplotlib_inline.backend_inline",
    )
    return env


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_runs(path):
    nb = nbformat.read(path, as_version=4)  # in memory: the file stays as committed
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3",
        resources={"metadata": {"path": str(TUTORIAL)}},
    )
    start = time.perf_counter()
    try:
        client.execute(env=_kernel_env(), cwd=str(TUTORIAL))
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{path.name} raised in smoke mode:\n{e}", pytrace=False)
    elapsed = time.perf_counter() - start
    assert elapsed < CELL_TIMEOUT, f"{path.name} took {elapsed:.0f}s in smoke mode"
