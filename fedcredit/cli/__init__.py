"""The `fedcredit` command: typer sub-apps per area."""
