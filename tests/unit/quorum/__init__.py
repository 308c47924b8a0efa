"""Unit tests of the quorum package (command line and client)."""
