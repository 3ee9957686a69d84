#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Regenerates the test-only SEV-SNP PKI: ARK (self-signed) -> ASK -> VCEK, shaped
# like AMD's (KDS spec 57230): ARK and ASK are RSA-4096 signing with RSASSA-PSS
# SHA-384 (the only algorithm sev's crypto_nossl chain check accepts), the VCEK
# is an ECDSA P-384 key with AMD's TCB and hwID extensions (values match
# tee-emu's reports: Genoa, blSPL 10, teeSPL 0, snpSPL 23, ucodeSPL 84, chip_id
# = bytes 0x01..=0x40). other-ark.pem is an unrelated root for "untrusted" tests.
# Keys are test keys, committed on purpose (tee-emu signs with vcek.key); never
# trust them.
set -eu
cd "$(dirname "$0")"
days=36500
pss="-sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -sigopt rsa_mgf1_md:sha384"
ca_ext='basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n'
amd='/OU=Engineering/C=US/L=Santa Clara/ST=CA/O=Advanced Micro Devices'

for root in ark other-ark; do
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out $root.key 2>/dev/null
  printf "$ca_ext" > ca.ext
  # shellcheck disable=SC2086
  openssl req -x509 -new -key $root.key -days $days $pss -subj "$amd/CN=ARK-Genoa tee-emu test ($root)" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out $root.pem
done

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out ask.key 2>/dev/null
# shellcheck disable=SC2086
openssl req -new -key ask.key -subj "$amd/CN=SEV-Genoa tee-emu test" -out ask.csr $pss
# shellcheck disable=SC2086
openssl x509 -req -in ask.csr -CA ark.pem -CAkey ark.key -set_serial 2 -days $days $pss \
  -extfile ca.ext -out ask.pem

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out vcek.key
openssl req -new -key vcek.key -subj "$amd/CN=SEV-VCEK" -out vcek.csr
hwid=$(i=1; while [ $i -le 64 ]; do printf '%02X' $i; i=$((i + 1)); done)
cat > vcek.ext <<EXT
basicConstraints=critical,CA:FALSE
1.3.6.1.4.1.3704.1.1=ASN1:INTEGER:1
1.3.6.1.4.1.3704.1.2=ASN1:IA5STRING:Genoa
1.3.6.1.4.1.3704.1.3.1=ASN1:INTEGER:10
1.3.6.1.4.1.3704.1.3.2=ASN1:INTEGER:0
1.3.6.1.4.1.3704.1.3.4=ASN1:INTEGER:0
1.3.6.1.4.1.3704.1.3.5=ASN1:INTEGER:0
1.3.6.1.4.1.3704.1.3.6=ASN1:INTEGER:0
1.3.6.1.4.1.3704.1.3.7=ASN1:INTEGER:0
1.3.6.1.4.1.3704.1.3.3=ASN1:INTEGER:23
1.3.6.1.4.1.3704.1.3.8=ASN1:INTEGER:84
1.3.6.1.4.1.3704.1.4=DER:$hwid
EXT
# shellcheck disable=SC2086
openssl x509 -req -in vcek.csr -CA ask.pem -CAkey ask.key -set_serial 3 -days $days $pss \
  -extfile vcek.ext -out vcek.pem
for c in ark ask vcek; do openssl x509 -in $c.pem -outform DER -out $c.der; done
openssl pkcs8 -topk8 -nocrypt -in vcek.key -outform DER -out vcek.pk8
# The trusted-roots bundle refkbs takes for az-snp-vtpm: ASK, then ARK.
cat ask.pem ark.pem > ask-ark.pem
rm -f ark.key ask.key other-ark.key ask.csr vcek.csr ca.ext vcek.ext ark.srl ask.srl
openssl verify -CAfile ark.pem -untrusted ask.pem vcek.pem
