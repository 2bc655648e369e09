#!/bin/sh
# Starts the gantry {{ role }} on {{ host }} under gantry's own supervisor (this host has no systemd).
# The supervisor detaches, writes {{ pid_file }}, restarts the daemon if it exits and stops it on SIGTERM.
# Rendered by `gantry up` from templates/supervise.sh.
exec '{{ binary }}' supervise --detach --pid-file '{{ pid_file }}' --log-file '{{ log_file }}' \
    --env-file '{{ env_file }}' -- '{{ binary }}'{% for arg in args %} '{{ arg }}'{% endfor %}
