"""The agent console: a Rasa input channel serving the live agents' REST API, WebSocket
and mobile-first single page under ``/webhooks/agent/`` (docs/agent-console.md)."""
