"""Agent sandboxes: the port, its adapters (bubblewrap, none) and the model proxy."""
