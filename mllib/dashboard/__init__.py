"""`mllib dashboard`: a Textual TUI over one project's runs, queue, agents and deployments.

The only package that imports textual; the CLI imports it inside the command, so `mllib --help`
never does. Modules, one job each: data (the one seam to the library: reads and actions, no
Textual), text (user text shown safely, values, sparklines), plot (braille curves), runs,
detail, compare, queue, deployments (the panes and screens), dialogs, app (tabs, refresh loop,
shared actions, command palette).
"""
