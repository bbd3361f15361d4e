"""Custom Rasa NLU components for the support assistant."""
