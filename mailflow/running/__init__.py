"""What runs mailflow: the engine's idempotent tick, the daemon around it (IDLE watcher,
clock, lock, logs) and the preflight check of every mail at start-up."""
