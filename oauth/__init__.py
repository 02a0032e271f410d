"""OAuth consent flows: provider configs as data, one-time state, granted-vs-required scopes."""
