"""Agent runtimes: each maps its SDK's messages onto the event vocabulary."""
