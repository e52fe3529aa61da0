"""Recipes: the YAML configs shipped inside the package, addressable by name.

They live in ``configs/`` at the top of the repository (where users browse and copy them); the package carries
the same files as ``ssl_siam/configs`` (a link to that folder in a checkout, copied into the wheel), so a recipe
name resolves from any directory once the package is installed. A name is a file stem (``simsiam_resnet50``) or
``<folder>/<stem>`` (``demo/study_resnet18``), also as its repository path (``configs/demo/study_resnet18.yaml``);
anything that is an existing file is used as a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssl_siam.core.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parents[1] / "configs"
#: recipe folder → the command whose config it is
COMMANDS = {"pretrain": "pretrain", "finetune": "finetune", "metric": "metric-train", "track": "track-train",
            "study": "study", "demo": "demo"}


@dataclass(frozen=True)
class Recipe:
    name: str  # <folder>/<stem>
    command: str  # the ssl-siam command it configures (demo: a stage of `ssl-siam demo`)
    path: Path
    summary: str  # the first comment line of the file


def recipes() -> list[Recipe]:
    """Every packaged recipe, sorted by name."""
    found = []
    for path in sorted(RECIPES_DIR.glob("*/*.yaml")):
        folder = path.parent.name
        first = next((line for line in path.read_text().splitlines() if line.startswith("#")), "#")
        found.append(Recipe(f"{folder}/{path.stem}", COMMANDS.get(folder, folder), path, first.lstrip("# ").strip()))
    return found


def resolve_recipe(config: str | Path) -> Path:
    """An existing file, else the packaged recipe of that name; a one-line ConfigError listing them otherwise."""
    path = Path(config)
    if path.is_file():
        return path
    text = str(config).removesuffix(".yaml").removeprefix("configs/")  # the repository path works from anywhere
    matches = [r.path for r in recipes() if text in (r.name, r.name.split("/", 1)[1])]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"--config {config}: several recipes have this name ({', '.join(map(str, matches))}); "
                          "give <folder>/<name>")
    if path.suffix in (".yaml", ".yml"):
        raise ConfigError(f"config file {config} does not exist (nor a packaged recipe of that name; see "
                          "`ssl-siam recipes`)")
    names = ", ".join(r.name for r in recipes())
    raise ConfigError(f"--config {config}: no such file and no recipe of that name; recipes: {names}")
