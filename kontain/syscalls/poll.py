"""Waiting on descriptors: poll, ppoll, select, pselect6, epoll."""
HANDLERS: dict = {}
