"""The store: what differs between the databases, behind one object per dialect.

Feature modules never test the dialect: they ask ``store_for(session)`` (engine.store.
dialects) for the store of the database they talk to and call its named statements and
expressions. ``Store`` (engine.store.base) holds what both databases share;
``PostgresStore`` and ``SqliteStore`` override the dialect's part, as DBOS's
``SystemDatabase`` subclasses do. State moves themselves stay engine.lifecycle's
(``transition``), which builds portable compare-and-set statements.
"""
