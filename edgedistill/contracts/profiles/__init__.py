"""Built-in device profiles (YAML files beside this module) and the loader for custom ones."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import yaml

from edgedistill.contracts.profiles.schema import DeviceProfile

_DIR = Path(__file__).parent


class ProfileError(ValueError):
    """A profile file that cannot be read or does not match the schema."""


def parse_profile(data: object) -> DeviceProfile:
    """Validate already-parsed profile data; raises pydantic.ValidationError on bad fields."""
    return DeviceProfile.model_validate(data)


def load_profile_file(path: Path) -> DeviceProfile:
    """Read a custom profile from YAML or JSON. safe_load only: no tags that construct objects."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read profile {path}: {exc}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ProfileError(f"profile {path} is not valid YAML/JSON: {exc}") from exc
    return parse_profile(data)


@cache
def builtin_profiles() -> dict[str, DeviceProfile]:
    out: dict[str, DeviceProfile] = {}
    for f in sorted(_DIR.glob("*.yaml")):
        p = parse_profile(yaml.safe_load(f.read_text(encoding="utf-8")))
        out[p.name] = p
    return out


def resolve_profile(name_or_path: str) -> DeviceProfile:
    """A built-in profile by name, or a custom profile file by path."""
    builtins = builtin_profiles()
    if name_or_path in builtins:
        return builtins[name_or_path]
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml", ".json"} and path.exists():
        return load_profile_file(path)
    raise ProfileError(
        f"unknown device profile {name_or_path!r}: use one of {', '.join(builtins)} or a .yaml/.json file"
    )
