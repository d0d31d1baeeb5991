#!/bin/sh
# Container entrypoint: `<service>` | `migrate [args]` | any other command. No argument runs $SERVICE.
# Every branch execs, so the Python process is PID 1 and receives SIGTERM directly.
set -eu

if [ "$#" -eq 0 ]; then
    set -- "${SERVICE:?set SERVICE or pass a service name}"
fi

case "$1" in
    schedule | coverage | callrouter | notifier)
        service="$1"
        shift
        exec python -m "services.${service}.main" "$@"
        ;;
    migrate)
        shift
        if [ "$#" -eq 0 ]; then
            set -- --all
        fi
        exec python -m shared.migrations "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
