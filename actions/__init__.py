"""Custom actions of the support assistant (rasa-sdk), one module per group."""
