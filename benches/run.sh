#!/usr/bin/env bash
# End-to-end benchmark on generated data, measured side by side on the same files:
#   our `run` (full load into a new ledger), a 1k-change delta against that ledger,
#   xmllint --stream --noout, xmllint --stream --schema, and cat > /dev/null (the I/O floor).
# Prints MB/s, records/s and peak RSS (/usr/bin/time -v) for each, and the ratios.
#
#   benches/run.sh [SUBSCRIBERS] [WORKDIR]      (defaults: 100000, a temporary folder)
#
# Needs xmllint (apt-get install -y libxml2-utils) and GNU time (apt-get install -y time).
set -euo pipefail
N=${1:-100000}
WORK=${2:-$(mktemp -d)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/target/release/nhi-linkage"
AS_OF=20261201

command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install -y time" >&2; exit 2; }
command -v xmllint >/dev/null || { echo "needs xmllint: apt-get install -y libxml2-utils" >&2; exit 2; }
(cd "$ROOT" && cargo build --release --quiet)

mkdir -p "$WORK"
echo "# generating $N subscribers into $WORK"
rm -rf "$WORK/xml" "$WORK/sjis" "$WORK/delta"
"$BIN" generate --subscribers "$N" --out "$WORK/xml" --as-of $AS_OF --seed 7 --format xml --encoding utf-8 | tail -1
"$BIN" generate --subscribers "$N" --out "$WORK/sjis" --as-of $AS_OF --seed 7 --format xml --encoding shift_jis | tail -1
"$BIN" generate --subscribers "$N" --out "$WORK/delta" --as-of $AS_OF --seed 7 --delta 1000 | tail -1

BYTES=$(cat "$WORK"/xml/*.xml | wc -c)
RECORDS=$(grep -c '<RecordSequence>' "$WORK"/xml/*.xml | awk -F: '{s+=$2} END {print s}')

# measure NAME CMD...: runs CMD under GNU time, prints seconds and peak RSS
measure() {
    local name=$1; shift
    local BYTES=${MBYTES:-$BYTES} RECORDS=${MRECORDS:-$RECORDS}
    /usr/bin/time -v -o "$WORK/time.$name" "$@" >/dev/null 2>"$WORK/err.$name" || true
    local secs rss
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/time.$name")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.$name")
    printf '%-28s %8.2f s %10.1f MB/s %12.0f records/s %8.0f MB RSS\n' "$name" "$secs" \
        "$(echo "$BYTES / $secs / 1000000" | bc -l)" "$(echo "$RECORDS / $secs" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
    echo "$secs" > "$WORK/secs.$name"
}

xmllint_all() { for f in "$WORK"/xml/*.xml; do xmllint --stream --noout "$f"; done; }
xmllint_schema_all() {
    for f in "$WORK"/xml/*.xml; do
        kind=$(basename "$f" | cut -d_ -f1)
        xmllint --stream --noout --schema "$ROOT/xsd/${kind}File.xsd" "$f" 2>/dev/null
    done
}
export -f xmllint_all xmllint_schema_all
export WORK ROOT

echo "# $N subscribers: $RECORDS records, $BYTES bytes of XML (UTF-8)"
measure cat_floor sh -c "cat '$WORK'/xml/*.xml > /dev/null"
measure xmllint_stream bash -c xmllint_all
measure xmllint_stream_schema bash -c xmllint_schema_all
rm -rf "$WORK/l1" "$WORK/l2" "$WORK/l3"
measure run_utf8_2threads "$BIN" run --inbox "$WORK/xml" --ledger "$WORK/l1/ledger.sqlite" --outbox "$WORK/l1/out" --reports "$WORK/l1/rep" --as-of $AS_OF --unmappable replace
measure run_utf8_1thread "$BIN" run --threads 1 --inbox "$WORK/xml" --ledger "$WORK/l2/ledger.sqlite" --outbox "$WORK/l2/out" --reports "$WORK/l2/rep" --as-of $AS_OF --unmappable replace
measure run_sjis_2threads "$BIN" run --inbox "$WORK/sjis" --ledger "$WORK/l3/ledger.sqlite" --outbox "$WORK/l3/out" --reports "$WORK/l3/rep" --as-of $AS_OF --unmappable replace
DBYTES=$(cat "$WORK"/delta/*.xml | wc -c)
DRECORDS=$(grep -c '<RecordSequence>' "$WORK"/delta/*.xml | awk -F: '{s+=$2} END {print s}')
MBYTES=$DBYTES MRECORDS=$DRECORDS measure delta_1k_on_full "$BIN" run --inbox "$WORK/delta" --ledger "$WORK/l1/ledger.sqlite" --outbox "$WORK/l1/out" --reports "$WORK/l1/rep" --as-of 20261202 --unmappable replace

r() { echo "scale=2; $(cat "$WORK/secs.$1") / $(cat "$WORK/secs.$2")" | bc -l; }
echo "# ratios"
echo "run throughput vs xmllint --stream --schema (want >= 2): $(echo "scale=2; $(cat "$WORK/secs.xmllint_stream_schema") / $(cat "$WORK/secs.run_utf8_2threads")" | bc -l)"
echo "Shift_JIS time / UTF-8 time (want <= 1.2):                $(r run_sjis_2threads run_utf8_2threads)"
echo "1 thread time / 2 threads time (want >= 1.7):             $(r run_utf8_1thread run_utf8_2threads)"
