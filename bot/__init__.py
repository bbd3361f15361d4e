"""Service code of the in-app support product (channels, stores, triage, FAQ)."""
