"""Entry point of the `fedcredit` command (also `python -m fedcredit.cli.main`)."""

from __future__ import annotations

from fedcredit.cli.app import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
