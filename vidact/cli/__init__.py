"""The ``vidact`` command line: one module per command group, logic lives in the library."""
