"""Test-only CQL tooling: a parser for the subset of CQL the Cassandra store writes (grammar.py),
used by the in-memory model (tests/cassandra_model.py), and a checker of the migrations and
statements by Cassandra's own rules (checker.py), run by tests/unit/test_cql_checker.py."""
