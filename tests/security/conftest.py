"""Security tests: the real servers, attacked from outside (docs/security.md).

Every module here starts (or shares) real processes — ``embedded_bot`` from
``tests/conftest.py`` — and attacks them over HTTP and WebSocket the way a
stranger on the network would, asserting the secure outcome: the status code or
close code, and that nothing was read or changed (stored rows, tracker slots).
"""
