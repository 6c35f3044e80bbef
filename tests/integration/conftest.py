"""Integration tier: real PostgreSQL (fixtures `pg_db`, `pg_engine` in the root conftest) and SQLite files.

Helpers shared by these tests are plain functions in `support.py`."""
