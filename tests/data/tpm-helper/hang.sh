#!/bin/sh
# A TPM helper stand-in that opens, then never answers (tests/vtpm.rs).
echo '"Ready"'
exec sleep 600
