"""Everything one sandbox process holds in memory: each provider's state and the shared traffic controls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox.facebook.state import FacebookState
from sandbox.google.state import GoogleState
from sandbox.traffic import Traffic


@dataclass
class SandboxState:
    seed: int
    google: GoogleState
    facebook: FacebookState
    traffic: Traffic = field(default_factory=Traffic)

    @classmethod
    def seeded(cls, seed: int) -> SandboxState:
        return cls(seed, GoogleState.seeded(seed), FacebookState.seeded(seed))

    def __getstate__(self) -> dict[str, Any]:
        """What a state file keeps: every provider's state; faults, quotas and the log belong to the process."""
        return {name: value for name, value in vars(self).items() if name != "traffic"}

    def __setstate__(self, saved: dict[str, Any]) -> None:
        vars(self).update(saved, traffic=Traffic())

    def reset(self) -> None:
        """Back to the state the process started with: seeded accounts only, no clients, faults, quotas or log."""
        self.google.sender.close()
        self.google = GoogleState.seeded(self.seed)
        self.facebook.sender.close()
        self.facebook = FacebookState.seeded(self.seed)
        self.traffic = Traffic()
