"""Incident events: schema, snapshots, durable outbox, ZeroMQ transport and the ICCC sink."""
