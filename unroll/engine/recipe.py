"""What the engine and the command line know about a recipe: a small, declarative record.

Each recipe module defines one ``RECIPE = Recipe(...)`` next to its config and presets; the
engine (config building, resume rules, run directories) and the CLI (``train``'s flags built
from the config dataclass, ``presets``) work from it, so no recipe writes those again. (The
other verbs — eval, predict and each recipe's own — are still written per recipe in
`unroll.cli`.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unroll.config import build_config, format_presets, parse_override_tokens


class Result:
    """Base of every recipe's result dataclass: ``to_dict()`` for results.json, and
    ``result["key"]`` reads a field (results were dicts before, and scripts index them)."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = str(v) if isinstance(v, Path) else v
        return out

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in dataclasses.fields(self)}:  # type: ignore[arg-type]
            raise KeyError(key)
        return getattr(self, key)

    def summary(self) -> str:
        """What the CLI prints at the end (a recipe overrides it)."""
        return "\n".join(f"{k}: {v}" for k, v in self.to_dict().items())


def _same(saved: Any, wanted: Any) -> Any:
    return wanted


@dataclass(frozen=True)
class Recipe:
    """name: the CLI word (``unroll NAME train``); kind: written in config.json and every
    checkpoint (``unroll.lm``); config: the config dataclass (a `unroll.config.RunConfig`);
    presets: name -> overrides of the defaults; default_preset: used when none is named (a
    function of the overrides, or a name, or None for the bare defaults)."""

    name: str
    kind: str
    config: type
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    default_preset: str | Callable[[Mapping[str, Any]], str | None] | None = None
    # Run-directory prefix for a config (default: the recipe's name).
    run_name: Callable[[Any], str] = field(default=None)  # type: ignore[assignment]
    # Fills what a resume request leaves unsaid from the saved config (e.g. sizes from data).
    normalize_resumed: Callable[[Any, Any], Any] = _same

    def __post_init__(self) -> None:
        if self.run_name is None:
            object.__setattr__(self, "run_name", lambda config: self.name)

    def preset_for(self, overrides: Mapping[str, Any]) -> str | None:
        if callable(self.default_preset):
            return self.default_preset(overrides)
        return self.default_preset

    def make_config(
        self,
        preset: str | None = None,
        config_file: str | Path | None = None,
        overrides: Sequence[str] | Mapping[str, Any] = (),
    ) -> Any:
        """Defaults -> preset (or the default one) -> --config file -> overrides; validated."""
        if preset is None:
            given = (
                dict(overrides)
                if isinstance(overrides, Mapping)
                else dict(parse_override_tokens(overrides))
            )
            preset = self.preset_for(given)
        return build_config(self.config, self.presets, preset, config_file, overrides)

    def preset(self, name: str) -> Any:
        """The config of a preset (validated)."""
        return build_config(self.config, self.presets, name)

    def format_presets(self) -> str:
        return format_presets(self.config, self.presets)

    def field_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.config)]
