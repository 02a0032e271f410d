"""Provider callbacks: verify, store the delivery, answer at once, let a worker do the rest."""
