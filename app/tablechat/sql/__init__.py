"""SQL layer: the guard, the database sandbox and schema snapshots."""
