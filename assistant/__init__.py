"""The clinical assistant: configuration, the command line and (later) the agent and the terminal UI."""
