"""Fault injection: what the simulator breaks on purpose, all off by default.

The fault set is defined once, as the `fault_*` fields of the `[sim]` config section
(`hftbot.config.SimConfig`, each written out with its comment in `hftbot/defaults.toml`);
`Faults` is built from those fields with the prefix dropped (`fault_drop_diff_every` →
`Faults.drop_diff_every`), so a new fault is a config field and the code that acts on it.
Counts are 1-based message numbers; see docs/sim.md for what each one does.

The server replaces the venue's `Faults` at run time (`POST /sim/faults`, `Faults.from_dict`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hftbot.config import SimConfig

PREFIX = "fault_"


class _FaultsBase:
    @classmethod
    def from_config(cls, sim: SimConfig) -> Any:
        """The `[sim]` section's `fault_*` values."""
        return cls(**{f.name: getattr(sim, PREFIX + f.name) for f in dataclasses.fields(cls)})

    @classmethod
    def from_dict(cls, d: dict) -> Any:
        """From a JSON body (`POST /sim/faults`): unknown names refused, the rest off."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - set(known))
        if bad:
            raise ValueError(f"sim faults: unknown field(s) {bad}; known: {sorted(known)}")
        return cls(**{k: type(known[k].default)(v) for k, v in d.items()})


Faults = dataclasses.make_dataclass(
    "Faults",
    [
        (f.name[len(PREFIX) :], type(f.default), dataclasses.field(default=f.default))
        for f in dataclasses.fields(SimConfig)
        if f.name.startswith(PREFIX)
    ],
    bases=(_FaultsBase,),
    namespace={"__doc__": "Faults to inject; the `[sim]` section's `fault_*` fields without the prefix."},
)
Faults.__module__ = __name__
