"""Pure domain: ids, statuses, events, progress, routing, errors. No I/O imports."""
