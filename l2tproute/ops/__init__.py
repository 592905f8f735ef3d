"""The operations: add, del, apply, status, list, and the panel policy they enforce."""
