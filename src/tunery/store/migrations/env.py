"""Alembic environment: run on the connection `tunery.store.session.migrate` hands over.

alembic -x url=sqlite:///service/tunery.db revision --autogenerate -m "..."   (from this folder's parent)
"""

from alembic import context
from sqlalchemy import create_engine

from tunery.store.tables import Base

config = context.config
connection = config.attributes.get("connection")


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///:memory:")
    with create_engine(url).begin() as own:
        run(own)
