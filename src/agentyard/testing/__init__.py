"""Test and offline-demo helpers: a scripted model server the real agent CLIs can talk to."""
