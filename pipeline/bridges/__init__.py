"""Bridges from the sink's store into the command centre's own systems (MQTT, webhooks): each reads
the stored events in order with its own cursor, at least once."""
