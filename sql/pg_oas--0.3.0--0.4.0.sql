-- pg_oas 0.3.0 -> 0.4.0 (ALTER EXTENSION pg_oas UPDATE). Each change adds its statements here,
-- with a line in this list; tests/client/test_upgrade.py checks the result equals a fresh install.

-- Last, as in a fresh install: every function made from Rust gets its doc comment.
SELECT oas._comment_functions();
