"""Every tutorial notebook executes without error in smoke mode.

Each notebook runs in a fresh ``python3`` kernel on an in-memory copy (the
committed file is never rewritten), with ``PROBPL_TUTORIAL_SMOKE=1`` so that it
takes few steps, ``OMP_NUM_THREADS=1``, and ``tutorial/`` as working directory.
A cell that raises fails the test with the cell's traceback.
"""

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TUTORIAL = Path(__file__).resolve().parent.parent / "tutorial"
NOTEBOOKS = sorted(TUTORIAL.glob("*.ipynb"))
CELL_TIMEOUT = 300

pytestmark = [
    # Some jupyter_client/jupyter_core releases warn about their own deprecations
    # (datetime.utcnow on Python 3.12, the platformdirs path migration) while a
    # kernel starts; they say nothing about probpl or the notebooks.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:jupyter_client"),
    pytest.mark.filterwarnings("ignore:Jupyter is migrating its paths:DeprecationWarning"),
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
    try:
        client.execute(env=_kernel_env(), cwd=str(TUTORIAL))
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{path.name} raised in smoke mode:\n{e}", pytrace=False)
