"""The demo's business tables: students, fees, journal entries, inventory."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pygov.demo import Demo

POSTGRES = """
DROP SCHEMA IF EXISTS demo CASCADE;
CREATE SCHEMA demo;
CREATE TABLE demo.student (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE demo.student_fee (
    id int PRIMARY KEY, student_id int NOT NULL REFERENCES demo.student (id),
    amount numeric(12, 2) NOT NULL, paid boolean NOT NULL DEFAULT false);
CREATE TABLE demo.journal_entry (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, fee_id int,
    amount numeric(12, 2) NOT NULL, description text NOT NULL,
    posted_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE demo.inventory (item text PRIMARY KEY, quantity int NOT NULL);
INSERT INTO demo.student VALUES (1, 'Amina'), (2, 'Bruno'), (3, 'Chen');
INSERT INTO demo.student_fee VALUES (101, 1, 450.00, false), (102, 2, 450.00, false),
                                    (103, 3, 300.00, false);
INSERT INTO demo.inventory VALUES ('notebook', 40), ('calculator', 12);
"""

SQLITE = """
DROP TABLE IF EXISTS demo_journal_entry;
DROP TABLE IF EXISTS demo_student_fee;
DROP TABLE IF EXISTS demo_student;
DROP TABLE IF EXISTS demo_inventory;
CREATE TABLE demo_student (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE demo_student_fee (
    id INTEGER PRIMARY KEY, student_id INTEGER NOT NULL REFERENCES demo_student (id),
    amount NUMERIC NOT NULL, paid INTEGER NOT NULL DEFAULT 0);
CREATE TABLE demo_journal_entry (
    id INTEGER PRIMARY KEY AUTOINCREMENT, fee_id INTEGER,
    amount NUMERIC NOT NULL, description TEXT NOT NULL,
    posted_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE TABLE demo_inventory (item TEXT PRIMARY KEY, quantity INTEGER NOT NULL);
INSERT INTO demo_student VALUES (1, 'Amina'), (2, 'Bruno'), (3, 'Chen');
INSERT INTO demo_student_fee VALUES (101, 1, 450.00, 0), (102, 2, 450.00, 0), (103, 3, 300.00, 0);
INSERT INTO demo_inventory VALUES ('notebook', 40), ('calculator', 12);
"""


def create(demo: Demo) -> None:
    """(Re)create the demo tables and their sample rows."""
    demo.gov._backend.execute_script(POSTGRES if demo.is_postgres else SQLITE)
    demo.say("demo tables: student, student_fee, journal_entry, inventory")
