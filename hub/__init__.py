"""Wiring: the HTTP app, the settings page, privacy controls, the CLI, start-up checks."""
