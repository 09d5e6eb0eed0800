"""The mllib agent: the program `mllib agents add` installs on an agent host.

It runs as an ordinary user with the venv's python (absolute path), speaks JSON lines over the
SSH channel (`python -m mllib_agent serve --root ROOT`), and uses mllib itself (shipped beside it)
for everything a run needs: the store, the registry, runtimes and the supervisor.
"""

PROTOCOL = 1
