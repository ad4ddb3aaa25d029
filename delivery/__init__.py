"""Delivery: events -> recipients -> the gateways holding their sessions."""
