"""Fault tests: the things Glassbox depends on (PostgreSQL, S3, the disk, its own processes)
fail under real runs, and the record must survive. Helpers: `pg` (a private PostgreSQL
cluster the test owns), `proxy` (a TCP proxy the test controls: cut, refuse, restore)."""
