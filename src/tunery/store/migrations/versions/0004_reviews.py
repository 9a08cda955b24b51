"""blind A/B reviews: reviews, their answers, items, human votes and judge verdicts

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-15 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("owner_key_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("prompts", sa.JSON(), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.Column("max_tokens", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("judge", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("closed_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reviews_project"), ["project"], unique=False)
        batch_op.create_index(batch_op.f("ix_reviews_status"), ["status"], unique=False)

    op.create_table(
        "review_answers",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("review_id", sa.String(length=40), nullable=False),
        sa.Column("prompt_index", sa.Integer(), nullable=False),
        sa.Column("model_index", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("finish_reason", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("review_id", "prompt_index", "model_index"),
    )
    with op.batch_alter_table("review_answers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_answers_review_id"), ["review_id"], unique=False)

    op.create_table(
        "review_items",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("review_id", sa.String(length=40), nullable=False),
        sa.Column("prompt_index", sa.Integer(), nullable=False),
        sa.Column("first_model", sa.Integer(), nullable=False),
        sa.Column("second_model", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_items_review_id"), ["review_id"], unique=False)

    op.create_table(
        "review_votes",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("review_id", sa.String(length=40), nullable=False),
        sa.Column("item_id", sa.String(length=40), nullable=False),
        sa.Column("reviewer_key_id", sa.String(length=40), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("first_shown_as", sa.String(length=1), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["review_items.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("item_id", "reviewer_key_id"),
    )
    with op.batch_alter_table("review_votes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_votes_item_id"), ["item_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_review_votes_review_id"), ["review_id"], unique=False)

    op.create_table(
        "review_judgements",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("review_id", sa.String(length=40), nullable=False),
        sa.Column("item_id", sa.String(length=40), nullable=False),
        sa.Column("judge", sa.String(length=400), nullable=False),
        sa.Column("first_as_a", sa.Boolean(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["review_items.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("item_id", "judge", "first_as_a"),
    )
    with op.batch_alter_table("review_judgements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_judgements_item_id"), ["item_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_review_judgements_review_id"), ["review_id"], unique=False)


def downgrade() -> None:
    for table in ("review_judgements", "review_votes", "review_items", "review_answers"):
        op.drop_table(table)
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reviews_status"))
        batch_op.drop_index(batch_op.f("ix_reviews_project"))
    op.drop_table("reviews")
