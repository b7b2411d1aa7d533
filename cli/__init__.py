"""The command line: an adapter on the registry API beside the window (``gui/``).

It parses arguments, asks on the terminal, draws progress and turns outcomes into exit codes;
everything it knows about extensions comes from ``registry/``.
"""
