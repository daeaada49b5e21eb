"""The embedded PostgreSQL survives a stop and start within one process (what `flashmart up` after
`down` in a notebook, and the simulator's restart_postgres fault, both do)."""

import psycopg

from flashmart.storage import embedded


def test_postgres_starts_again_after_a_stop_in_the_same_process(tmp_path):
    url = embedded.start_postgres(tmp_path)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        assert embedded.stop_postgres(tmp_path)
        assert embedded.postgres_pid(tmp_path) is None
        url = embedded.start_postgres(tmp_path)
        assert embedded.postgres_pid(tmp_path) is not None
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (7,)
    finally:
        embedded.stop_postgres(tmp_path)
