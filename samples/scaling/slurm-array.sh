#!/bin/bash
# nhi-linkage scaled out on Slurm: N shard runs as a job array, then the merge step, which starts
# only if every shard succeeded (--dependency=afterok). See "Scaling out" in README.md.
#
#   N=4 AS_OF=20261201 ROOT=/srv/nhi samples/scaling/slurm-array.sh          # on a login node
#
# Layout under ROOT (shared file system; each ledger is used by one task at a time):
#   inbox/                        the night's files, read by every shard
#   shard-<i>/ledger.sqlite       shard i's ledger (keep N fixed: a shard ledger belongs to one shard)
#   shard-<i>/outbox, reports/    shard i's run folders and reports (never sent anywhere)
#   outbox/, reports/             the merged run folder (what goes to the intermediate server)
#   logs/
#
#SBATCH --job-name=nhi-linkage
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=04:00:00
set -euo pipefail

: "${N:=4}"
: "${AS_OF:=$(date +%Y%m%d)}"
: "${ROOT:=/srv/nhi}"
: "${NHI:=nhi-linkage}"
export N AS_OF ROOT NHI

case "${1:-submit}" in
submit)
    mkdir -p "$ROOT/logs"
    shards=$(sbatch --parsable --array="0-$((N - 1))" --export=ALL \
        --output="$ROOT/logs/shard-%A-%a.log" "$0" shard)
    merge=$(sbatch --parsable --dependency="afterok:${shards}" --kill-on-invalid-dep=yes --export=ALL \
        --job-name=nhi-linkage-merge --output="$ROOT/logs/merge-%j.log" "$0" merge)
    echo "shard runs: job array ${shards} (0-$((N - 1))); merge: job ${merge} after all of them succeed"
    ;;
shard)
    i="${SLURM_ARRAY_TASK_ID:?run by sbatch --array}"
    dir="$ROOT/shard-$i"
    mkdir -p "$dir"
    rc=0
    "$NHI" run --inbox "$ROOT/inbox" --shard "$i/$N" --as-of "$AS_OF" --init-ledger \
        --ledger "$dir/ledger.sqlite" --outbox "$dir/outbox" --reports "$dir/reports" \
        --threads "${SLURM_CPUS_PER_TASK:-1}" || rc=$?
    # 1 = completed with rejected records: this shard is done, the merged report lists them.
    # Anything else non-zero (2 refusal, 3 aborted, 4 ledger busy, 130 stopped) fails the task,
    # and the merge does not start.
    if [ "$rc" -eq 1 ]; then rc=0; fi
    exit "$rc"
    ;;
merge)
    from=()
    for ((i = 0; i < N; i++)); do
        from+=(--from "$ROOT/shard-$i")
    done
    rc=0
    "$NHI" merge-shards "${from[@]}" --outbox "$ROOT/outbox" --reports "$ROOT/reports" || rc=$?
    # 1 = merged; some records were rejected (see the merged report)
    if [ "$rc" -eq 1 ]; then rc=0; fi
    exit "$rc"
    ;;
*)
    echo "usage: $0 [submit|shard|merge]" >&2
    exit 2
    ;;
esac
