"""Stand-ins for FCM and APNs that speak their real wire protocols to the real client libraries
(firebase-admin, aioapns): FCM's HTTP v1 API with its OAuth token endpoint, and APNs over HTTP/2
and TLS with token authentication. Each can be scripted per token: answer an error, answer it
n times then accept, or never answer. Tests only; the product never imports them.
"""
