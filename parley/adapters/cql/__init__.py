"""CQL for the Cassandra store: the statements as data, a parser and checker for them that
need no server, the migration runner, and the session seam (driver or in-memory model)."""
