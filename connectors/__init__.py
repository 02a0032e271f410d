"""One connector per provider, the base interfaces, the error taxonomy and the registry."""
