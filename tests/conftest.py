"""Test-wide settings: tiny models on one torch thread (and no spinning threads on shared cores)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported anywhere

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models run best on one thread (and do not fight other processes for the cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
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
