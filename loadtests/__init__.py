"""Load generation: the protocol benchmark (make bench) and, later, Locust users."""
