"""``python -m packet.devserver [flags]``: see ``packet.devserver.cli``."""

from packet.devserver.cli import main

if __name__ == "__main__":
    main()
