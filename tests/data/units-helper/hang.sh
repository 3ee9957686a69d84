#!/bin/sh
# A units helper stand-in that never finishes (tests/run.rs).
exec sleep 600
