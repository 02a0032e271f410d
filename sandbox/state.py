"""Everything one sandbox process holds in memory: each provider's state and the shared traffic controls."""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox.google.state import GoogleState
from sandbox.traffic import Traffic


@dataclass
class SandboxState:
    seed: int
    google: GoogleState
    traffic: Traffic = field(default_factory=Traffic)

    @classmethod
    def seeded(cls, seed: int) -> SandboxState:
        return cls(seed, GoogleState.seeded(seed))

    def reset(self) -> None:
        """Back to the state the process started with: seeded accounts only, no clients, faults, quotas or log."""
        self.google = GoogleState.seeded(self.seed)
        self.traffic = Traffic()
