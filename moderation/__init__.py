"""Moderation: the policy engine every write is checked against."""
