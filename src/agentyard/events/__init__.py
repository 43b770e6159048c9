"""The event log: append (persist with seq, then publish) and subscribe from any seq."""
