"""The ICCC operator console: incidents from the sink's store, worked by logged-in operators."""
