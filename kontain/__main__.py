from kontain.cli.km import entry

entry()
