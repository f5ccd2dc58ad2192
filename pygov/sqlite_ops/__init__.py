"""SQLite implementations of the governance operations, one module per capability.

Each function takes the connection (already inside ``BEGIN IMMEDIATE``) and the same argument
tuple the PostgreSQL statement gets, and returns rows shaped like PostgreSQL's.
"""
