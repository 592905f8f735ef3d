"""The core: the route model, the route file format, table names, the kernel's state as
typed values, the one planner, and the tool's words. Reads no state of its own."""
