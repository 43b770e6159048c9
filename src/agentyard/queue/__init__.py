"""The TaskQueue port and its adapters (in-process LocalQueue; procrastinate)."""
