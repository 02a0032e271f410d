"""Background sync: the Celery app on Redis, sync runs, checkpoints, the scope gate and the throttle."""
