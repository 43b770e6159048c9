"""Agentyard: a self-hosted server that runs coding agents as asynchronous tasks."""

__version__ = "0.1.0"
