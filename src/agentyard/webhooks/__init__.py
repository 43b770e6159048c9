"""Signed webhooks: run status changes delivered to users' endpoints, at least once.

``signing`` (Standard Webhooks), ``urls`` (which targets are allowed), ``payload`` (the
message of a status change), ``delivery`` (one attempt, backoff), ``dispatcher`` (the
embedded delivery loop) and ``service`` (the endpoints' use cases).
"""
