"""Storage for the platform service: SQLAlchemy 2 tables, sessions and Alembic migrations.

    engine = connect("sqlite:///service/tunery.db")   # runs the migrations up to head
    with session_factory(engine)() as session: ...

SQLite is the embedded default; PostgreSQL is supported through psycopg 3.
Importing this package loads no torch.
"""

from tunery.store.session import connect, migrate, session_factory

__all__ = ["connect", "migrate", "session_factory"]
