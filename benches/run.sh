#!/usr/bin/env bash
# End-to-end benchmark on generated data, measured side by side on the same files, and the goals of
# issue 16 checked as ratios within this one run of the script:
#   our `run` (full load into a new ledger: UTF-8 with 2 threads and 1 thread, Shift_JIS), the peers
#   on the same XML (xmllint --stream --noout, xmllint --stream --schema, a Python lxml script that
#   collects each record's fields into a dict: benches/lxml_records.py, cat > /dev/null as the I/O
#   floor), `migrate` of the full load's snapshot, and P2: one delta of 10000 changes run against the
#   full ledger of N subscribers and against a ledger of N/10 subscribers that holds every
#   subscriber the delta touches (generate --newcomers-from N: its new members are new to both).
#   Prints seconds, CPU seconds (user + system), MB/s, records/s, peak RSS (/usr/bin/time -v) and
#   exit status for each, then every ratio with its goal, and appends the same as a table to
#   docs/benchmarks.md (date, commit, machine, load).
#
#   benches/run.sh [SUBSCRIBERS] [WORKDIR]      (defaults: 100000, a temporary folder)
#
# Environment (optional):
#   FLAGGED_RATIO=0.05     generate --flagged-ratio (share of 国保 members with flags; default 0.02)
#   CHUNK_RECORDS=100000   run --chunk-records (records applied per chunk; default: run's own)
#   DELTA_CHANGES=10000    changes in the P2 delta (default 10000; at most N/10, or N when smaller)
#   BENCH_DOC=FILE         where the table is appended (default docs/benchmarks.md; /dev/null: nowhere)
#
# Needs xmllint (apt-get install -y libxml2-utils), GNU time (apt-get install -y time), bc and
# Debian's lxml for /usr/bin/python3 (apt-get install -y python3-lxml).
set -euo pipefail
N=${1:-100000}
WORK=${2:-$(mktemp -d)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/target/release/nhi-linkage"
DOC=${BENCH_DOC:-$ROOT/docs/benchmarks.md}
AS_OF=20261201
NEXT_DAY=20261202
case $N in '' | *[!0-9]*) echo "SUBSCRIBERS must be a number, not '$N'" >&2; exit 2 ;; esac
DELTA=${DELTA_CHANGES:-10000}
case $DELTA in '' | *[!0-9]* | 0) echo "DELTA_CHANGES must be a positive number, not '$DELTA'" >&2; exit 2 ;; esac
# P2's small ledger: N/10 subscribers, at least the delta (a delta touches each person once)
SMALL=$((N / 10 > DELTA ? N / 10 : DELTA))
SMALL=$((SMALL < N ? SMALL : N))
DELTA=$((DELTA < SMALL ? DELTA : SMALL))
GEN_OPTS=()
[ -n "${FLAGGED_RATIO:-}" ] && GEN_OPTS+=(--flagged-ratio "$FLAGGED_RATIO")
RUN_OPTS=(--unmappable replace)
[ -n "${CHUNK_RECORDS:-}" ] && RUN_OPTS+=(--chunk-records "$CHUNK_RECORDS")

command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install -y time" >&2; exit 2; }
command -v xmllint >/dev/null || { echo "needs xmllint: apt-get install -y libxml2-utils" >&2; exit 2; }
command -v bc >/dev/null || { echo "needs bc: apt-get install -y bc" >&2; exit 2; }
/usr/bin/python3 -c 'import lxml' 2>/dev/null || { echo "needs lxml for /usr/bin/python3: apt-get install -y python3-lxml" >&2; exit 2; }
(cd "$ROOT" && cargo build --release --quiet)

mkdir -p "$WORK"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "# generating $N subscribers (and $SMALL for P2's small ledger) and a delta of $DELTA changes into $WORK${GEN_OPTS[*]:+ (${GEN_OPTS[*]})}"
rm -rf "$WORK/xml" "$WORK/sjis" "$WORK/small" "$WORK/delta"
gen() { "$BIN" generate --as-of $AS_OF --seed 7 ${GEN_OPTS[@]+"${GEN_OPTS[@]}"} "$@" | tail -1; }
gen --subscribers "$N" --out "$WORK/xml" --format xml --encoding utf-8
gen --subscribers "$N" --out "$WORK/sjis" --format xml --encoding shift_jis
gen --subscribers "$SMALL" --out "$WORK/small" --format xml --encoding utf-8
# the changed members are the small population's (in both ledgers), the new ones are new to both
gen --subscribers "$SMALL" --out "$WORK/delta" --format xml --encoding utf-8 --delta "$DELTA" --newcomers-from "$N"

count_records() { cat "$@" | grep -c '<RecordSequence>' || true; }
BYTES=$(cat "$WORK"/xml/*.xml | wc -c)
RECORDS=$(count_records "$WORK"/xml/*.xml)

# measure NAME CMD...: runs CMD under GNU time; prints seconds, CPU seconds, MB/s, records/s, peak
# RSS and the exit status; keeps seconds, CPU seconds, RSS (KB) and exit status in
# $WORK/{secs,cpu,rss,exit}.NAME and the line for the table in $WORK/table
measure() {
    local name=$1; shift
    local BYTES=${MBYTES:-$BYTES} RECORDS=${MRECORDS:-$RECORDS}
    /usr/bin/time -v -o "$WORK/time.$name" "$@" >"$WORK/out.$name" 2>"$WORK/err.$name" || true
    local secs cpu rss status mbs rps
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/time.$name")
    secs=$(echo "if ($secs < 0.01) 0.01 else $secs" | bc -l)
    cpu=$(awk -F': ' '/User time|System time/ {s+=$2} END {print s}' "$WORK/time.$name")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.$name")
    status=$(awk -F': ' '/Exit status/ {print $2}' "$WORK/time.$name")
    mbs=$(printf '%.1f' "$(echo "$BYTES / $secs / 1000000" | bc -l)")
    rps=$(printf '%.0f' "$(echo "$RECORDS / $secs" | bc -l)")
    printf '%-28s %8.2f s %8.2f cpu s %8s MB/s %10s records/s %6.0f MB RSS   exit %s\n' "$name" "$secs" "$cpu" \
        "$mbs" "$rps" "$(echo "$rss / 1024" | bc -l)" "$status"
    printf '| %s | %.2f | %.2f | %s | %s | %.0f | %s |\n' "$name" "$secs" "$cpu" "$mbs" "$rps" \
        "$(echo "$rss / 1024" | bc -l)" "$status" >> "$WORK/table"
    echo "$secs" > "$WORK/secs.$name"
    echo "$cpu" > "$WORK/cpu.$name"
    echo "$rss" > "$WORK/rss.$name"
    echo "$status" > "$WORK/exit.$name"
}
: > "$WORK/table"

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
measure lxml_dict /usr/bin/python3 "$ROOT/benches/lxml_records.py" "$WORK"/xml/*.xml
LXML_READ=$(cat "$WORK/out.lxml_dict" 2>/dev/null || true)
[ "$LXML_READ" = "$RECORDS" ] || echo "WARNING: the lxml script read ${LXML_READ:-nothing} records, not $RECORDS: see $WORK/err.lxml_dict"
rm -rf "$WORK/l1" "$WORK/l2" "$WORK/l3" "$WORK/ls"
at l1; measure run_utf8_2threads "$BIN" -v run "${AT[@]}" --threads 2 --inbox "$WORK/xml" --as-of $AS_OF
at l2; measure run_utf8_1thread "$BIN" -v run "${AT[@]}" --threads 1 --inbox "$WORK/xml" --as-of $AS_OF
at l3; measure run_sjis_2threads "$BIN" run "${AT[@]}" --threads 2 --inbox "$WORK/sjis" --as-of $AS_OF
# only l1 is needed further on: at 2M each full ledger and outbox takes gigabytes
rm -rf "$WORK/l2" "$WORK/l3"
SBYTES_XML=$(cat "$WORK"/small/*.xml | wc -c)
SRECORDS_XML=$(count_records "$WORK"/small/*.xml)
at ls; MBYTES=$SBYTES_XML MRECORDS=$SRECORDS_XML measure run_small_ledger_load "$BIN" run "${AT[@]}" --threads 2 --inbox "$WORK/small" --as-of $AS_OF

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
echo "# P2 delta: $DELTA changes ($DREG 後期 registrations), $DRECORDS records, $DBYTES bytes, run with --as-of $NEXT_DAY"
at l1; MBYTES=$DBYTES MRECORDS=$DRECORDS measure delta_on_full_ledger "$BIN" -v run "${AT[@]}" --inbox "$WORK/delta" --as-of $NEXT_DAY
at ls; MBYTES=$DBYTES MRECORDS=$DRECORDS measure delta_on_small_ledger "$BIN" -v run "${AT[@]}" --inbox "$WORK/delta" --as-of $NEXT_DAY
grep -h '^run ' "$WORK/out.delta_on_full_ledger" | sed "s/^/  on the $N-subscriber ledger: /" || true
grep -h '^run ' "$WORK/out.delta_on_small_ledger" | sed "s/^/  on the $SMALL-subscriber ledger: /" || true
for d in delta_on_full_ledger delta_on_small_ledger; do
    [ "$(cat "$WORK/exit.$d")" = 0 ] || echo "WARNING: $d exited $(cat "$WORK/exit.$d"): the delta did not apply cleanly, P2 compares unlike runs"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

ratio() { printf '%.2f' "$(echo "$(cat "$WORK/$1") / $(cat "$WORK/$2")" | bc -l)"; }
# goal NAME VALUE OP TARGET: one line of the ratio table, with whether the goal is met
: > "$WORK/goals"
goal() {
    local met
    met=$(echo "$2 $3 $4" | bc -l)
    printf '%-62s %6s   goal %s %s   %s\n' "$1" "$2" "$3" "$4" "$([ "$met" = 1 ] && echo met || echo NOT MET)"
    printf '| %s | %s | %s %s | %s |\n' "$1" "$2" "$3" "$4" "$([ "$met" = 1 ] && echo met || echo '**not met**')" >> "$WORK/goals"
}
RSS_MB=$(printf '%.0f' "$(echo "$(cat "$WORK/rss.run_utf8_2threads") / 1024" | bc -l)")
echo "# goals (issue 16), ratios of wall-clock times in this run"
goal "P1 xmllint --stream --schema time / run time (UTF-8, 2 threads)" "$(ratio secs.xmllint_stream_schema secs.run_utf8_2threads)" ">=" 1.0
goal "P1 lxml script time / run time (UTF-8, 2 threads)" "$(ratio secs.lxml_dict secs.run_utf8_2threads)" ">=" 2.0
goal "P2 delta on $N / delta on $SMALL subscribers" "$(ratio secs.delta_on_full_ledger secs.delta_on_small_ledger)" "<=" 1.5
goal "P3 full load peak RSS, MB (UTF-8, 2 threads)" "$RSS_MB" "<=" 1024
goal "P3 Shift_JIS time / UTF-8 time" "$(ratio secs.run_sjis_2threads secs.run_utf8_2threads)" "<=" 1.1
goal "P4 1 thread time / 2 threads time" "$(ratio secs.run_utf8_1thread secs.run_utf8_2threads)" ">=" 1.7
echo "# the same, CPU seconds (user + system; steadier on a shared machine, but blind to waiting and to the 2nd core)"
echo "P1 xmllint --stream --schema / run:   $(ratio cpu.xmllint_stream_schema cpu.run_utf8_2threads)"
echo "P1 lxml script / run:                 $(ratio cpu.lxml_dict cpu.run_utf8_2threads)"
echo "P2 delta on $N / on $SMALL:          $(ratio cpu.delta_on_full_ledger cpu.delta_on_small_ledger)"
echo "# peak RSS"
echo "full load, KB per input record:                                $(printf '%.2f' "$(echo "$(cat "$WORK/rss.run_utf8_2threads") / $RECORDS" | bc -l)")"
echo "full load / xmllint --stream --schema:                         $(ratio rss.run_utf8_2threads rss.xmllint_stream_schema)"
echo "1 thread / 2 threads:                                          $(ratio rss.run_utf8_1thread rss.run_utf8_2threads)"
echo "Shift_JIS / UTF-8:                                             $(ratio rss.run_sjis_2threads rss.run_utf8_2threads)"
echo "delta on $N / delta on $SMALL subscribers:                     $(ratio rss.delta_on_full_ledger rss.delta_on_small_ledger)"
echo "migrate first load, MB ($SGROUPS subscribers):                 $(printf '%.0f' "$(echo "$(cat "$WORK/rss.migrate_first_load") / 1024" | bc -l)")"
# phases NAME: the phase lines of a `run -v` line's log (time of day, Japan time as logged)
phases() {
    grep -E ' INFO (ledger quick_check|read inbox|applied and stored|linkage written|outputs staged|committed|first load: ledger put in place|ledger checkpointed|published|ledger closed)' \
        "$WORK/err.$1" | sed -E 's/^[^ ]+T([0-9:.]+)[^ ]* +INFO /  \1 /' || true
}
: > "$WORK/phases"
for p in run_utf8_2threads run_utf8_1thread delta_on_full_ledger delta_on_small_ledger; do
    echo "# phases of $p (run -v)"
    { echo "  $p:"; phases $p; } | tee -a "$WORK/phases" | tail -n +2
done

# the table for docs/benchmarks.md
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with uncommitted changes)' || true)
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
{
    echo
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC'), $N subscribers, commit $COMMIT$DIRTY"
    echo
    echo "Machine: $(nproc) CPUs ($CPU), $MEM. Load average (1/5/15 min) before: $LOAD_BEFORE, after: $LOAD_AFTER."
    echo "Input: $RECORDS records, $BYTES bytes of XML (UTF-8); P2 delta: $DELTA changes, $DRECORDS records, on ledgers of $N and $SMALL subscribers."
    echo "Options: ${RUN_OPTS[*]}${GEN_OPTS[*]:+; generate ${GEN_OPTS[*]}}."
    echo
    echo "| line | wall s | cpu s | MB/s | records/s | peak RSS MB | exit |"
    echo "|---|---|---|---|---|---|---|"
    cat "$WORK/table"
    echo
    echo "| goal | value | target | |"
    echo "|---|---|---|---|"
    cat "$WORK/goals"
    if [ -s "$WORK/phases" ]; then
        echo
        echo "Phases (\`run -v\`; times of day as logged, Japan time; elapsed_ms of a phase after reading counts from the start of applying, \`ledger closed\` is the close alone):"
        echo
        sed 's/^ */    /' "$WORK/phases"
    fi
} >> "$DOC"
echo "# appended to $DOC"
