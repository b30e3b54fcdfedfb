"""Sockets."""
HANDLERS: dict = {}
