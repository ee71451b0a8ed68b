#!/bin/sh
# Starts the example echo backend and the gateway in front of it, so that
# `make run` can be tried end to end. Extra arguments go to wsgate.
set -eu
cd "$(dirname "$0")/.."

backend_port=${BACKEND_PORT:-3001}
/usr/bin/python3 examples/echo_backend.py --port "$backend_port" &
backend=$!
trap 'kill $backend 2>/dev/null || true' EXIT INT TERM

# Wait for the backend to listen (at most 5 s).
i=0
until /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $backend_port), 0.2)" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 50 ]; then
        echo "run-demo: the echo backend did not start on port $backend_port" >&2
        exit 1
    fi
    sleep 0.1
done

echo "run-demo: echo backend on ws://127.0.0.1:$backend_port; try:"
echo "  /usr/bin/python3 examples/client.py ws://127.0.0.1:9000/?clientId=demo"
./build/wsgate --backend "127.0.0.1:$backend_port" "$@"
