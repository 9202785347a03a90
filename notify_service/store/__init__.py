"""notify_service's storage: devices, settings, the push queue, the sent set and dead letters."""
