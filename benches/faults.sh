#!/usr/bin/env bash
# Crash-and-fault drill (issue 13): N iterations of runs killed with SIGKILL at random moments,
# each followed by reruns until the run completes, compared with an uninterrupted reference:
#
#   kill     a full load, then a nightly delta, each killed at a random moment (0..KILL_MS ms)
#            and rerun; the outbox files and the ledger's logical content must equal the
#            reference's byte for byte, and nothing may be left in staging or spill.
#   shared   a 国保 ledger and a union ledger on ONE outbox and reports folder, run at the same
#            time, each killed at random and rerun: both must end equal to their references.
#   diskfull a run on a small tmpfs (when the machine allows mounting one): it must fail cleanly
#            (nothing published, ledger unchanged) and a rerun with room must equal the reference.
#   umask    a run under umask 000: every folder it creates is 0700, every file 0600.
#
#   benches/faults.sh [ITERATIONS] [SUBSCRIBERS] [WORKDIR]    (defaults: 20, 2000, a temp folder)
#
# Prints one line per iteration and a summary; exits 1 if any iteration differed.
set -euo pipefail
ITER=${1:-20}
N=${2:-2000}
WORK=${3:-$(mktemp -d)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-"$ROOT/target/release/nhi-linkage"}
if [ ! -x "$BIN" ]; then (cd "$ROOT" && cargo build --release --quiet); fi
command -v python3 >/dev/null || { echo "needs python3" >&2; exit 2; }

mkdir -p "$WORK"
rm -rf "$WORK"/{pop,delta,kokuho,kouki,ref-*,it}
"$BIN" generate --subscribers "$N" --seed 11 --as-of 20261201 --out "$WORK/pop" >/dev/null
"$BIN" generate --subscribers "$N" --seed 11 --as-of 20261201 --delta $((N / 20 + 10)) --out "$WORK/delta" >/dev/null
# the union's files apart from the 国保 side's, for the shared-outbox drill
mkdir -p "$WORK/kokuho" "$WORK/kouki"
for f in "$WORK"/pop/*; do
    case $(basename "$f") in
        *_39*) cp "$f" "$WORK/kouki/" ;;
        *) cp "$f" "$WORK/kokuho/" ;;
    esac
done

# digest SITE: outbox files (name + SHA-256), the ledger's logical content, and anything left over
digest() {
    python3 - "$1" <<'EOF'
import hashlib, os, re, sqlite3, sys
site = sys.argv[1]
out = []
for root, dirs, files in os.walk(os.path.join(site, "outbox")):
    for f in sorted(files):
        p = os.path.join(root, f)
        out.append("file %s %s" % (os.path.relpath(p, site), hashlib.sha256(open(p, "rb").read()).hexdigest()))
for d in ("outbox", "reports"):
    for n in sorted(os.listdir(os.path.join(site, d))) if os.path.isdir(os.path.join(site, d)) else []:
        if n.startswith(".staging-"):
            out.append("LEFTOVER staging " + n)
for n in sorted(os.listdir(site)):
    if n.startswith(".nhi-spill"):
        out.append("LEFTOVER spill " + n)
for led in sorted(f for f in os.listdir(site) if f.endswith(".sqlite")):
    c = sqlite3.connect(os.path.join(site, led))
    for (t,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
        q = "SELECT * FROM %s ORDER BY 1, 2" % t
        if t == "run":
            # a rerun after a commit applies nothing and publishes nothing: it leaves a run row
            # without outputs, which an uninterrupted history does not have
            q = "SELECT run_id, as_of, status, outbox_final, report_final FROM run WHERE outbox_final IS NOT NULL ORDER BY 1"
        if t == "inquiry":
            # such a rerun inquires the open registrations again (R13): their counters move
            q = "SELECT insurer, subscriber_key, status, first_run, answered_run, answered_by FROM inquiry ORDER BY 1, 2"
        for row in c.execute(q):
            # paths name the site's folder and the ledger's tag: compare them without
            line = ("%s %s %r" % (led, t, row)).replace(os.path.realpath(site), "SITE")
            out.append(re.sub(r"\.staging-[0-9a-f]+-", ".staging-TAG-", line))
out.sort()
if os.environ.get("DIGEST_LINES"):
    print("\n".join(out), file=sys.stderr)
print(hashlib.sha256("\n".join(out).encode()).hexdigest(), sum(1 for l in out if l.startswith("LEFTOVER")))
EOF
}

# command SITE LEDGER INBOX AS_OF [extra...]: sets CMD to the run's command line
command_for() {
    local site=$1 ledger=$2 inbox=$3 as_of=$4
    shift 4
    local init=()
    [ -e "$site/$ledger" ] || init=(--init-ledger)
    CMD=("$BIN" -q run --inbox "$inbox" --outbox "$site/outbox" --reports "$site/reports"
        --ledger "$site/$ledger" --as-of "$as_of" --unmappable replace "${init[@]}" "$@")
}

run() { # SITE LEDGER INBOX AS_OF [extra...]
    command_for "$@"
    "${CMD[@]}"
}

# until_done SITE LEDGER INBOX AS_OF: reruns until the run completes (exit 0, 1 or 5)
until_done() {
    local tries=0 rc
    while :; do
        tries=$((tries + 1))
        set +e
        run "$@" >/dev/null 2>&1
        rc=$?
        set -e
        case $rc in 0 | 1 | 5) echo $tries; return ;; 4) sleep 0.05 ;; *) ;; esac
        [ $tries -lt 20 ] || { echo "never completed (exit $rc)" >&2; echo 99; return; }
    done
}

# killed SITE LEDGER INBOX AS_OF: starts the run, SIGKILLs it after a random delay
killed() {
    command_for "$@"
    local delay rc
    delay=$(python3 -c "import random; print(random.randint(0, $KILL_MS) / 1000)")
    # coreutils timeout sends SIGKILL to the run itself after the delay: exit 137 when it did
    set +e
    (timeout -s KILL "$delay" "${CMD[@]}" >/dev/null 2>&1) 2>/dev/null
    rc=$?
    set -e
    # counted when the run was still going (a kill after it finished proves nothing)
    if [ $rc -eq 137 ]; then echo hit >>"$WORK/hits"; fi
}

echo "# references ($N subscribers)"
mkdir -p "$WORK/ref-kill" "$WORK/ref-kokuho" "$WORK/ref-kouki"
t0=$(date +%s%N)
until_done "$WORK/ref-kill" l.sqlite "$WORK/pop" 20261201 >/dev/null
FULL_MS=$((($(date +%s%N) - t0) / 1000000))
# kill somewhere in the run: 0 .. 1.2 × an uninterrupted full load, unless KILL_MS says otherwise
KILL_MS=${KILL_MS:-$((FULL_MS * 12 / 10 + 1))}
echo "# an uninterrupted full load takes $FULL_MS ms; kills at random in 0..$KILL_MS ms"
REF_FULL=$(digest "$WORK/ref-kill")
FULL_KB=$(du -sk "$WORK/ref-kill" | cut -f1)
until_done "$WORK/ref-kill" l.sqlite "$WORK/delta" 20261202 >/dev/null
REF_KILL=$(digest "$WORK/ref-kill")
until_done "$WORK/ref-kokuho" kokuho.sqlite "$WORK/kokuho" 20261201 >/dev/null
until_done "$WORK/ref-kokuho" kouki.sqlite "$WORK/kouki" 20261201 >/dev/null
REF_SHARED=$(digest "$WORK/ref-kokuho")

fail=0
kills=0
: >"$WORK/hits"
for i in $(seq 1 "$ITER"); do
    it="$WORK/it"
    rm -rf "$it"
    mkdir -p "$it"
    # kill: full load and delta
    killed "$it" l.sqlite "$WORK/pop" 20261201
    t1=$(until_done "$it" l.sqlite "$WORK/pop" 20261201)
    killed "$it" l.sqlite "$WORK/delta" 20261202
    t2=$(until_done "$it" l.sqlite "$WORK/delta" 20261202)
    kills=$((kills + 2))
    got=$(digest "$it")
    k=ok
    [ "$got" = "$REF_KILL" ] || { k=DIFFERS; fail=1; }
    # shared outbox: both ledgers at once, both killed, both rerun
    rm -rf "$it"
    mkdir -p "$it"
    killed "$it" kokuho.sqlite "$WORK/kokuho" 20261201 &
    killed "$it" kouki.sqlite "$WORK/kouki" 20261201 &
    wait
    until_done "$it" kokuho.sqlite "$WORK/kokuho" 20261201 >/dev/null &
    until_done "$it" kouki.sqlite "$WORK/kouki" 20261201 >/dev/null &
    wait
    kills=$((kills + 2))
    got=$(digest "$it")
    s=ok
    [ "$got" = "$REF_SHARED" ] || { s=DIFFERS; fail=1; }
    echo "iteration $i: kill $k (tries $t1/$t2), shared $s"
done

# umask 000: folders 0700, files 0600
rm -rf "$WORK/umask"
mkdir -p "$WORK/umask"
(umask 000 && until_done "$WORK/umask" l.sqlite "$WORK/pop" 20261201 >/dev/null)
loose=$(find "$WORK/umask" -mindepth 1 \( -type d ! -perm 0700 -o -type f ! -perm 0600 \) | wc -l)
if [ "$loose" -eq 0 ]; then echo "umask 000: every folder 0700, every file 0600"; else
    echo "umask 000: $loose path(s) readable by others"; find "$WORK/umask" -mindepth 1 \( -type d ! -perm 0700 -o -type f ! -perm 0600 \) | head; fail=1; fi

# disk full: the full load on tmpfs disks of 10..90% of what it needs (root and mount permission
# needed). Each run either completes, equal to the reference, or fails with nothing published;
# the disk then grown, a rerun must end equal to the reference.
TMPFS="$WORK/tmpfs"
mkdir -p "$TMPFS"
if mount -t tmpfs -o size=64k tmpfs "$TMPFS" 2>/dev/null; then
    umount "$TMPFS"
    trap 'umount "$TMPFS" 2>/dev/null || true' EXIT
    df_ok=0
    df_n=0
    for pct in 10 20 30 40 50 60 70 80 90 95; do
        df_n=$((df_n + 1))
        mount -t tmpfs -o size=$((FULL_KB * pct / 100 + 64))k tmpfs "$TMPFS"
        chmod 700 "$TMPFS"
        set +e
        run "$TMPFS" l.sqlite "$WORK/pop" 20261201 >/dev/null 2>&1
        rc=$?
        published=$(find "$TMPFS/outbox" -mindepth 1 -maxdepth 1 ! -name '.staging-*' 2>/dev/null | wc -l)
        set -e
        verdict=DIFFERS
        if [ "$rc" -eq 0 ] || [ "$published" -eq 0 ]; then
            # the operator makes room (here: the same disk, grown) and runs again
            mount -o remount,size=$((FULL_KB * 4))k "$TMPFS"
            until_done "$TMPFS" l.sqlite "$WORK/pop" 20261201 >/dev/null
            [ "$(digest "$TMPFS")" = "$REF_FULL" ] && verdict=ok
        fi
        umount "$TMPFS"
        [ $verdict = ok ] && df_ok=$((df_ok + 1)) || fail=1
        echo "disk full at ${pct}%: exit $rc, $published folder(s) published, after making room: $verdict"
    done
    trap - EXIT
    echo "disk full: $df_ok of $df_n sizes ended equal to the reference"
else
    echo "disk full: skipped (cannot mount a tmpfs here)"
fi

echo "# $ITER iterations, $kills SIGKILLs sent, $(wc -l <"$WORK/hits") of them to a run still going; $([ $fail -eq 0 ] && echo 'every rerun equal to the reference' || echo 'DIFFERENCES FOUND')"
exit $fail
