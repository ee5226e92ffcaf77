"""`medassist chat`: the Textual terminal UI, a view of the Agent (everything it shows comes from an Answer)."""
