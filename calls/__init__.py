"""Calls: LiveKit call lifecycle and token minting (arrives with the calls issue)."""
