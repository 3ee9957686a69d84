#!/bin/sh
# A TPM helper stand-in that opens, then dies of SIGSEGV on the first
# request (tests/vtpm.rs). No core file.
ulimit -c 0
echo '"Ready"'
read -r request
kill -SEGV $$
