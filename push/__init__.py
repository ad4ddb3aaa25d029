"""Push: notifications to FCM and APNs for people who are not looking (issue 14). Values
(notification), payloads, one client per provider (providers/), retries and dead letters
(retry), sending a batch (sender); the `parley.push` worker and the device registry wire these."""
