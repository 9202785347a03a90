"""notify_service: push notifications for members with no online device."""
