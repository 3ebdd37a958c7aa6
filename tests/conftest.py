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
