#!/bin/sh
# Import and export throughput of neurrun on a generated safetensors file, against
# `cat FILE > /dev/null` on the same machine in the same run. Usage:
#   sh bench/io.sh [SIZE]        (default 512MiB; run from the repository root)
set -eu
SIZE=${1:-512MiB}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/neurstore-io.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
BIN=bin/neurrun
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/neurrun

go run ./bench/genmodel -size "$SIZE" -out "$WORK/big.safetensors"
BYTES=$(stat -c %s "$WORK/big.safetensors")

secs() { # run a command, print its wall time in seconds
	s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N)
	echo "$e - $s" | bc -l
}
rate() { echo "scale=1; $BYTES / 1048576 / $1" | bc -l; }

cat "$WORK/big.safetensors" >/dev/null # warm the page cache for every contender
CAT=$(secs sh -c "cat '$WORK/big.safetensors' > /dev/null")
IMP=$(secs "$BIN" --store "$WORK/store" import --name big "$WORK/big.safetensors")
EXP=$(secs "$BIN" --store "$WORK/store" export big "$WORK/out.safetensors")
CP=$(secs cp "$WORK/big.safetensors" "$WORK/copy.safetensors")
"$BIN" compare "$WORK/big.safetensors" "$WORK/out.safetensors" >/dev/null

printf '%-34s %8s %10s\n' "step ($(($BYTES / 1048576)) MiB file)" seconds MiB/s
printf '%-34s %8.2f %10s\n' "cat FILE > /dev/null" "$CAT" "$(rate "$CAT")"
printf '%-34s %8.2f %10s\n' "cp FILE (read + write + no sync)" "$CP" "$(rate "$CP")"
printf '%-34s %8.2f %10s\n' "neurrun import" "$IMP" "$(rate "$IMP")"
printf '%-34s %8.2f %10s\n' "neurrun export" "$EXP" "$(rate "$EXP")"
