#!/usr/bin/env bash
# End-to-end benchmark on generated data, measured side by side on the same files:
#   our `run` (full load into a new ledger: UTF-8 with 2 threads and 1 thread, Shift_JIS),
#   a nightly delta of max(1000, N/200) changes against that full ledger and the same delta against
#   an empty ledger, xmllint --stream --noout, xmllint --stream --schema, and cat > /dev/null (the
#   I/O floor). Prints seconds, MB/s, records/s, peak RSS (/usr/bin/time -v) and exit status for
#   each, then the ratios.
#
#   benches/run.sh [SUBSCRIBERS] [WORKDIR]      (defaults: 100000, a temporary folder)
#
# Environment (optional):
#   FLAGGED_RATIO=0.05     generate --flagged-ratio (share of 国保 members with flags; default 0.02)
#   CHUNK_RECORDS=100000   run --chunk-records (records applied per chunk; default: run's own)
#
# Needs xmllint (apt-get install -y libxml2-utils), GNU time (apt-get install -y time) and bc.
set -euo pipefail
N=${1:-100000}
WORK=${2:-$(mktemp -d)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/target/release/nhi-linkage"
AS_OF=20261201
NEXT_DAY=20261202
case $N in '' | *[!0-9]*) echo "SUBSCRIBERS must be a number, not '$N'" >&2; exit 2 ;; esac
DELTA=$((N / 200 > 1000 ? N / 200 : 1000))
# a delta touches each person once: no more changes than subscribers
DELTA=$((DELTA < N ? DELTA : N))
GEN_OPTS=()
[ -n "${FLAGGED_RATIO:-}" ] && GEN_OPTS+=(--flagged-ratio "$FLAGGED_RATIO")
RUN_OPTS=(--unmappable replace)
[ -n "${CHUNK_RECORDS:-}" ] && RUN_OPTS+=(--chunk-records "$CHUNK_RECORDS")

command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install -y time" >&2; exit 2; }
command -v xmllint >/dev/null || { echo "needs xmllint: apt-get install -y libxml2-utils" >&2; exit 2; }
command -v bc >/dev/null || { echo "needs bc: apt-get install -y bc" >&2; exit 2; }
(cd "$ROOT" && cargo build --release --quiet)

mkdir -p "$WORK"
echo "# generating $N subscribers and a delta of $DELTA changes into $WORK${GEN_OPTS[*]:+ (${GEN_OPTS[*]})}"
rm -rf "$WORK/xml" "$WORK/sjis" "$WORK/delta"
gen() { "$BIN" generate --subscribers "$N" --as-of $AS_OF --seed 7 ${GEN_OPTS[@]+"${GEN_OPTS[@]}"} "$@" | tail -1; }
gen --out "$WORK/xml" --format xml --encoding utf-8
gen --out "$WORK/sjis" --format xml --encoding shift_jis
gen --out "$WORK/delta" --format xml --encoding utf-8 --delta "$DELTA"

count_records() { cat "$@" | grep -c '<RecordSequence>' || true; }
BYTES=$(cat "$WORK"/xml/*.xml | wc -c)
RECORDS=$(count_records "$WORK"/xml/*.xml)

# measure NAME CMD...: runs CMD under GNU time; prints seconds, MB/s, records/s, peak RSS and the
# exit status; keeps seconds and RSS (KB) in $WORK/secs.NAME and $WORK/rss.NAME
measure() {
    local name=$1; shift
    local BYTES=${MBYTES:-$BYTES} RECORDS=${MRECORDS:-$RECORDS}
    /usr/bin/time -v -o "$WORK/time.$name" "$@" >"$WORK/out.$name" 2>"$WORK/err.$name" || true
    local secs rss status
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/time.$name")
    secs=$(echo "if ($secs < 0.01) 0.01 else $secs" | bc -l)
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.$name")
    status=$(awk -F': ' '/Exit status/ {print $2}' "$WORK/time.$name")
    printf '%-28s %8.2f s %10.1f MB/s %12.0f records/s %8.0f MB RSS   exit %s\n' "$name" "$secs" \
        "$(echo "$BYTES / $secs / 1000000" | bc -l)" "$(echo "$RECORDS / $secs" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$status"
    echo "$secs" > "$WORK/secs.$name"
    echo "$rss" > "$WORK/rss.$name"
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

# at DIR: sets AT to the `run` options for a ledger, outbox and reports of its own under $WORK/DIR
at() { AT=(--ledger "$WORK/$1/ledger.sqlite" --init-ledger --outbox "$WORK/$1/out" --reports "$WORK/$1/rep" "${RUN_OPTS[@]}"); }

echo "# $N subscribers: $RECORDS records, $BYTES bytes of XML (UTF-8)${RUN_OPTS[*]:+; run ${RUN_OPTS[*]}}"
measure cat_floor sh -c "cat '$WORK'/xml/*.xml > /dev/null"
measure xmllint_stream bash -c xmllint_all
measure xmllint_stream_schema bash -c xmllint_schema_all
rm -rf "$WORK/l1" "$WORK/l2" "$WORK/l3" "$WORK/l4"
at l1; measure run_utf8_2threads "$BIN" run "${AT[@]}" --threads 2 --inbox "$WORK/xml" --as-of $AS_OF
at l2; measure run_utf8_1thread "$BIN" run "${AT[@]}" --threads 1 --inbox "$WORK/xml" --as-of $AS_OF
at l3; measure run_sjis_2threads "$BIN" run "${AT[@]}" --threads 2 --inbox "$WORK/sjis" --as-of $AS_OF
# only l1 is needed further on: at 2M each full ledger and outbox takes gigabytes
rm -rf "$WORK/l2" "$WORK/l3"

# migrate: the full load's 国保 SubscriberLinkage (what the server holds) as a snapshot, into an
# empty ledger (first load) and again (nothing differs)
rm -rf "$WORK/snap" "$WORK/m"; mkdir -p "$WORK/snap"
cp "$WORK"/l1/out/*/SubscriberLinkage_00*.csv "$WORK/snap/"
SBYTES=$(cat "$WORK"/snap/*.csv | wc -c)
SGROUPS=$(cat "$WORK"/snap/*.csv | grep -ac '^01,')
echo "# migrate: snapshot of $SGROUPS subscribers, $SBYTES bytes (CSV, Shift_JIS)"
MIG=(migrate --ledger "$WORK/m/ledger.sqlite" --init-ledger --from "$WORK/snap" --reports "$WORK/m/rep" --outbox "$WORK/m/out"
     --as-of $AS_OF --municipality 131041 --unmappable replace ${CHUNK_RECORDS:+--chunk-records "$CHUNK_RECORDS"})
MBYTES=$SBYTES MRECORDS=$SGROUPS measure migrate_first_load "$BIN" "${MIG[@]}"
MBYTES=$SBYTES MRECORDS=$SGROUPS measure migrate_again "$BIN" "${MIG[@]}"
rm -rf "$WORK/m"

DBYTES=$(cat "$WORK"/delta/*.xml | wc -c)
DRECORDS=$(count_records "$WORK"/delta/*.xml)
DREG=$(count_records "$WORK"/delta/SubscriberChange_39*.xml)
echo "# delta: $DELTA changes ($DREG 後期 registrations), $DRECORDS records, $DBYTES bytes, run with --as-of $NEXT_DAY"
at l1; MBYTES=$DBYTES MRECORDS=$DRECORDS measure delta_on_full_ledger "$BIN" run "${AT[@]}" --inbox "$WORK/delta" --as-of $NEXT_DAY
at l4; MBYTES=$DBYTES MRECORDS=$DRECORDS measure delta_on_empty_ledger "$BIN" run "${AT[@]}" --inbox "$WORK/delta" --as-of $NEXT_DAY
grep -h '^run ' "$WORK/out.delta_on_full_ledger" | sed 's/^/  on full ledger:  /' || true
grep -h '^run ' "$WORK/out.delta_on_empty_ledger" | sed 's/^/  on empty ledger: /' || true

ratio() { printf '%.2f' "$(echo "$(cat "$WORK/$1") / $(cat "$WORK/$2")" | bc -l)"; }
echo "# ratios"
echo "run throughput vs xmllint --stream --schema (want >= 2):      $(ratio secs.xmllint_stream_schema secs.run_utf8_2threads)"
echo "Shift_JIS time / UTF-8 time (want <= 1.2):                     $(ratio secs.run_sjis_2threads secs.run_utf8_2threads)"
echo "1 thread time / 2 threads time (want >= 1.7):                  $(ratio secs.run_utf8_1thread secs.run_utf8_2threads)"
echo "delta on full ledger / delta on empty ledger (want <= 1.5):    $(ratio secs.delta_on_full_ledger secs.delta_on_empty_ledger)"
echo "# peak RSS"
echo "full load, KB per input record:                                $(printf '%.2f' "$(echo "$(cat "$WORK/rss.run_utf8_2threads") / $RECORDS" | bc -l)")"
echo "full load / xmllint --stream --schema:                         $(ratio rss.run_utf8_2threads rss.xmllint_stream_schema)"
echo "1 thread / 2 threads:                                          $(ratio rss.run_utf8_1thread rss.run_utf8_2threads)"
echo "delta on full ledger / delta on empty ledger:                  $(ratio rss.delta_on_full_ledger rss.delta_on_empty_ledger)"
echo "delta on full ledger / full load:                              $(ratio rss.delta_on_full_ledger rss.run_utf8_2threads)"
echo "migrate first load, MB ($SGROUPS subscribers):                 $(printf '%.0f' "$(echo "$(cat "$WORK/rss.migrate_first_load") / 1024" | bc -l)")"
