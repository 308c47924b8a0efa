"""Storage: the SQLAlchemy model, engines and sessions, and the Alembic migrations."""
