"""Test-wide settings: tiny models on one torch thread (and no spinning threads on shared cores)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported anywhere


def _tmp_on_tmpfs(shm: str = "/dev/shm", room: int = 4 << 30) -> None:
    """tmp_path (and every temporary file of the tests and their subprocesses) in memory when /dev/shm
    has room and no TMPDIR is set: Dagster's SQLite event log commits each event (fsyncs), which left
    the CPUs idle for a quarter of a tiny pipeline run on disk (docs/development.md)."""
    if "TMPDIR" in os.environ or not os.access(shm, os.W_OK):
        return
    st = os.statvfs(shm)
    if st.f_bavail * st.f_frsize >= room:
        import tempfile

        os.environ["TMPDIR"] = shm
        tempfile.tempdir = None  # gettempdir() reads TMPDIR again


_tmp_on_tmpfs()  # before pytest picks its base temporary folder

import pytest  # noqa: E402
import torch  # noqa: E402

#: the slowest files (whole tiny pipelines, a Dask cluster, a web server), slowest first: `make test`'s
#: workers (pytest-xdist, `--dist loadfile`: a file runs whole on one worker) start with them rather
#: than one worker ending alone on one of them. Order within a file is kept.
SLOW_FIRST = ("test_pipeline_store.py", "test_uses_pipeline.py", "test_cluster.py", "test_pipeline.py",
              "test_webserver.py", "test_gpu_bench.py", "test_store_url.py", "test_store_faults.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest as collected


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models and small matrices run best on one thread, and do not fight other processes (the
    other test workers) for the cores: torch's, and BLAS's (idle OpenBLAS threads spin: 9.1 → 7.0 s
    CPU for test_covlasso + test_gauge). Tests about thread counts set their own."""
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1, user_api="blas"):
        yield
    torch.set_num_threads(n)


@pytest.fixture()
def toy_package(tmp_path):
    """Write a toy package `toy` (module name -> source) under tmp_path; returns its folder."""
    def make(modules: dict[str, str]):
        pkg = tmp_path / "toy"
        pkg.mkdir(exist_ok=True)
        (pkg / "__init__.py").write_text("")
        for name, source in modules.items():
            (pkg / f"{name}.py").write_text(source)
        return pkg
    return make


@pytest.fixture(params=["local", "memory"])
def new_store(request, tmp_path):
    """Make result stores on a local data root, or (param "memory") with their root on a fresh
    `memory://` URL (an fsspec object store: one put per file, no rename), data root local."""
    import uuid

    from neudep_assets.lib.store import ResultStore

    def make(name: str = "data"):
        url = None if request.param == "local" else f"memory://neudep-test-{uuid.uuid4().hex}/{name}"
        return ResultStore(tmp_path / name, url)
    return make
