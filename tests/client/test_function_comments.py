"""Every public function explains itself in psql (`\\df+ oas.*`): its COMMENT ON FUNCTION comes
from the Rust doc comment (build.rs, src/comments.rs) or sits beside its SQL definition."""

from __future__ import annotations

from conftest import connect


def test_every_oas_function_has_a_comment(db):
    with connect(db) as c:
        missing = c.execute(
            """SELECT p.oid::regprocedure::text FROM pg_proc p
                WHERE p.pronamespace = 'oas'::regnamespace AND p.proname LIKE 'oas\\_%'
                  AND coalesce(obj_description(p.oid, 'pg_proc'), '') = ''
                ORDER BY 1""").fetchall()
        count = c.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'oas'::regnamespace"
                          " AND proname LIKE 'oas\\_%'").fetchone()[0]
    assert count >= 40
    assert missing == []


def test_comment_is_the_doc_comment(db):
    """The comment is the doc comment's text, paragraphs kept, rustdoc link brackets dropped."""
    with connect(db) as c:
        comment = c.execute(
            "SELECT obj_description('oas.oas_store_revoke(text, text, text)'::regprocedure, 'pg_proc')"
        ).fetchone()[0]
    assert comment.startswith("Take back what `oas_store_grant` gave.")
    assert "[`" not in comment


def test_comments_are_reapplied_by_the_function(db):
    """oas._comment_functions() is what upgrades call: it restores a comment someone removed."""
    with connect(db) as c:
        c.execute("COMMENT ON FUNCTION oas.oas_content_hash(bytea) IS NULL")
        assert c.execute("SELECT obj_description('oas.oas_content_hash(bytea)'::regprocedure, 'pg_proc')"
                         ).fetchone()[0] is None
        assert c.execute("SELECT oas._comment_functions()").fetchone()[0] >= 40
        assert c.execute("SELECT obj_description('oas.oas_content_hash(bytea)'::regprocedure, 'pg_proc')"
                         ).fetchone()[0]
