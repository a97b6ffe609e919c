"""``python -m vidact`` (and ``torchrun -m vidact``) run the CLI."""

from vidact.cli.main import main

main()
