#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Regenerates the test-only TLS material: a CA, a server certificate for
# 127.0.0.1 and localhost signed by it, the same for a server whose
# certificate has expired (its notAfter a day before its notBefore), and an
# unrelated CA for the "wrong CA" test. Keys are test keys, committed on purpose; never trust them.
set -eu
cd "$(dirname "$0")"
days=36500
for ca in ca other-ca; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $days \
    -subj "/CN=cvm-attest test $ca" -keyout $ca.key -out $ca.pem \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
done
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=refkbs test server" \
  -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days $days \
  -extfile server.ext -out server.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=refkbs expired server" \
  -keyout expired.key -out expired.csr 2>/dev/null
openssl x509 -req -in expired.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days -1 \
  -extfile server.ext -out expired.pem 2>/dev/null
rm -f server.csr expired.csr server.ext ca.srl ca.key other-ca.key
