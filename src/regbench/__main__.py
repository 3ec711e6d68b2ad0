"""``python -m regbench <command>``: the same as the ``regbench`` command."""

from regbench.cli.main import main

main()
