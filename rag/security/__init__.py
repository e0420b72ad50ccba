"""Security: API keys and encryption at rest."""
