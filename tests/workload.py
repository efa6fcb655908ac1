"""A seeded random workload of the kinds of writes outside writers make, for fault-injection tests."""

from __future__ import annotations

import random
import threading
import uuid

import psycopg

PRIORITIES = ("HIGH", "MEDIUM", "LOW", "LOW", "URGENT")
STATUSES = ("PENDING", "PROCESSING", "COMPLETED", "FAILED")


class Workload:
    """Random inserts, status and priority changes, attempts, renames, deletes and profiles.

    The same seed gives the same sequence of operations.
    """

    def __init__(self, seed: int, usernames: int = 40) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.names = [f"wl_user_{i}" for i in range(usernames)]
        self.transactions = 0

    def _name(self) -> str:
        name = self.rng.choice(self.names)
        return name.upper() if self.rng.random() < 0.15 else name

    def transaction(self, conn: psycopg.Connection) -> None:
        """One transaction of one to four random operations."""
        with conn.transaction():
            for _ in range(self.rng.randint(1, 4)):
                self._operation(conn)
        self.transactions += 1

    def _operation(self, conn: psycopg.Connection) -> None:
        rng = self.rng
        op = rng.choices(
            ("insert", "advance", "priority", "rename", "delete", "profile", "unprofile", "bulk"),
            weights=(30, 35, 8, 4, 6, 6, 4, 2),
        )[0]
        # A row chosen by the seed, not by Postgres' random().
        pick = f"(SELECT id FROM queue ORDER BY id LIMIT 1 OFFSET floor({rng.random():.6f} * (SELECT count(*) FROM queue)))"
        if op == "insert":
            conn.execute(
                "INSERT INTO queue (id, username, source, priority, status, timestamp, request_id)"
                " VALUES (%s, %s, 'wl', %s, 'PENDING',"
                " CASE WHEN %s THEN NULL ELSE clock_timestamp() - %s * interval '1 second' END, %s)",
                (
                    uuid.UUID(int=rng.getrandbits(128)),
                    self._name(),
                    rng.choice(PRIORITIES),
                    rng.random() < 0.05,
                    rng.randint(0, 600),
                    f"wl-{rng.getrandbits(64):x}",
                ),
            )
        elif op == "advance":
            conn.execute(
                f"UPDATE queue SET status = %s, last_attempt = clock_timestamp() - %s * interval '1 second',"
                f" attempts = COALESCE(attempts, 0) + 1, error_message = %s WHERE id = {pick}",
                (rng.choice(STATUSES), rng.randint(0, 300), rng.choice((None, "timeout"))),
            )
        elif op == "priority":
            conn.execute(f"UPDATE queue SET priority = %s WHERE id = {pick}", (rng.choice(PRIORITIES),))
        elif op == "rename":
            conn.execute(
                "UPDATE queue SET username = %s WHERE lower(username) = %s", (self._name(), self._name().lower())
            )
        elif op == "delete":
            conn.execute(f"DELETE FROM queue WHERE id = {pick}")
        elif op == "profile":
            conn.execute(
                "INSERT INTO primary_profiles (username, followers_count, posts_count, created_at, updated_at)"
                " VALUES (%s, %s, %s, clock_timestamp() - %s * interval '1 hour', clock_timestamp())"
                " ON CONFLICT (username) DO UPDATE SET followers_count = EXCLUDED.followers_count,"
                " updated_at = clock_timestamp()",
                (self._name(), rng.randint(0, 10**6), rng.randint(0, 900), rng.randint(0, 48)),
            )
        elif op == "unprofile":
            conn.execute("DELETE FROM primary_profiles WHERE lower(username) = %s", (self._name().lower(),))
        else:
            conn.execute("UPDATE queue SET status = %s WHERE priority = %s", (rng.choice(STATUSES), rng.choice(PRIORITIES)))


class WriterThread:
    """Commits workload transactions continuously until stopped."""

    def __init__(self, database_url: str, seed: int) -> None:
        self.workload = Workload(seed)
        self._url = database_url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="writer", daemon=True)
        self.errors: list[BaseException] = []

    def _main(self) -> None:
        try:
            with psycopg.connect(self._url, autocommit=True) as conn:
                while not self._stop.is_set():
                    self.workload.transaction(conn)
        except BaseException as exc:
            self.errors.append(exc)

    def start(self) -> WriterThread:
        """Begin committing."""
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop and return the number of committed transactions."""
        self._stop.set()
        self._thread.join(30)
        assert not self.errors, self.errors
        return self.workload.transactions
