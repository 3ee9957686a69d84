#!/bin/sh
# A units helper stand-in whose job failed: its one-line error on stdout,
# exit 1 (tests/run.rs).
echo "restart a.service: the job ended with result 'failed' (see journalctl -u a.service)"
exit 1
