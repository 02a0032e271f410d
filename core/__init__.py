"""The base every synchub package stands on: settings, database, connections, identity, Redis."""
