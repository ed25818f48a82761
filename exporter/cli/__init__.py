"""The command line: the exporter and its subcommands."""
