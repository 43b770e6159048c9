"""Where agents work: git repositories, workspace files, and the GitHub connection."""
