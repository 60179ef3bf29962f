"""Config plumbing: the checks a config passes before anything runs, and loading config
files by path."""
