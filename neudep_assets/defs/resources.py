"""Resources: the project config and result store, the device, and a JSON IO manager for pointers."""


import json
from pathlib import Path

import dagster as dg
from upath import UPath

from neudep_assets.lib.config import ConfigError, ProjectConfig, config_path, data_root, load_config, store_location
from neudep_assets.lib.models.watch import Watched, scan_watch
from neudep_assets.lib.specs import ModelSpec
from neudep_assets.lib.store import ResultStore, atomic_write


class Neudep(dg.ConfigurableResource):
    """Where the project config and the data root are (NEUDEP_CONFIG / NEUDEP_DATA by default)."""

    config_path: str
    data_root: str
    device: str = "auto"  # auto picks cuda -> mps -> cpu

    def project(self) -> ProjectConfig:
        return load_config(self.config_path)

    def watched(self, project: ProjectConfig | None = None) -> tuple[list[Watched], list[tuple[Path, str]]]:
        """Checkpoint folders of the watched directories, and the refused ones with the reason."""
        project = project or self.project()
        found, refused = scan_watch(project.watch_dirs(Path(self.data_root)))
        names = {m.name for m in project.models}
        refused += [(w.folder, f"checkpoint folder {w.folder}: model name {w.name!r} is already a model of "
                               f"{project.path}") for w in found if w.name in names]
        return [w for w in found if w.name not in names], refused

    def model_names(self) -> list[str]:
        """The config's models, then the watched checkpoint folders."""
        project = self.project()
        return [m.name for m in project.models] + [w.name for w in self.watched(project)[0]]

    def spec(self, name: str) -> ModelSpec:
        """The model of a partition key: a config entry, or a watched checkpoint folder."""
        project = self.project()
        if any(m.name == name for m in project.models):
            return project.model(name)
        for w in self.watched(project)[0]:
            if w.name == name:
                return w.spec(Path(self.data_root))
        raise ConfigError(f"no model {name!r}: not in {project.path} and no valid checkpoint folder of that name in "
                          f"{', '.join(map(str, project.watch_dirs(Path(self.data_root))))}")

    def store(self) -> ResultStore:
        """The result store: its root from NEUDEP_STORE or the config's `store:` (default: the data root)."""
        url, origin = store_location(self.data_root, self.config_path)
        return ResultStore(self.data_root, url, origin=origin)

    def pick_device(self) -> str:
        from neudep_assets.lib.models import pick_device

        wanted = self.device if self.device != "auto" else self.project().device
        return pick_device(None if wanted == "auto" else wanted)


class _JsonPointerIOManager(dg.UPathIOManager):
    """Assets hand each other small JSON pointers to content-addressed artifacts (never pickles)."""

    extension = ".json"

    def dump_to_path(self, context: dg.OutputContext, obj, path: UPath) -> None:
        atomic_write(Path(str(path)), lambda fh: fh.write(json.dumps(obj, indent=1, default=str).encode()))

    def load_from_path(self, context: dg.InputContext, path: UPath):
        return json.loads(path.read_text())


class JsonPointerIOManager(dg.ConfigurableIOManagerFactory):
    base_dir: str

    def create_io_manager(self, context) -> _JsonPointerIOManager:
        return _JsonPointerIOManager(base_path=UPath(self.base_dir))


def default_resources(config: str | None = None, root: str | None = None) -> dict:
    root = Path(root).resolve() if root else data_root()
    return {
        "neudep": Neudep(config_path=str(Path(config).resolve() if config else config_path()), data_root=str(root)),
        "io_manager": JsonPointerIOManager(base_dir=str(root / "pointers")),
    }
