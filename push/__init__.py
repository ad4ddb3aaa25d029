"""Push: FCM and APNs worker and device registry (arrives with the push issue)."""
