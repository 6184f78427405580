#!/bin/sh
# turns20.sh MIXEL MODEL - issue 16's multi-turn measure: 20 turns of `mixel run --session` (the
# chat's own engine path: template, KV snapshot between turns, the cache plan), each asking a new
# question and sampling a 32-token answer; prints the final prompt's size, how much of it the
# user turns and template markers are (the rest: answers 1-19 as the cache holds them), and the
# total tokens evaluated over the 20 turns. Ideal: every turn evaluates only its new user turn,
# ratio 1.0. Uses a private XDG data folder, removed afterwards.
set -eu
M=$1; MODEL=$2; d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
export XDG_DATA_HOME="$d/data" XDG_CONFIG_HOME="$d/cfg"
pre=0; prompt=0; gen=0
for i in $(seq 1 20); do
    q="Turn $i: tell me a little more about what happened after that, please."
    line=$("$M" run -m "$MODEL" --session s20 -p "$q" -n 32 --temp 0.8 -s "$i" -t 2 2>&1 >/dev/null |
           grep 'mixel run: session')
    p=$(echo "$line" | sed -n 's/.*prompt \([0-9]*\) tokens.*/\1/p')
    n=$(echo "$line" | sed -n 's/.*cache, \([0-9]*\) processed.*/\1/p')
    g=$(echo "$line" | sed -n 's/.*; \([0-9]*\) generated.*/\1/p')
    pre=$((pre + n)); prompt=$p
    [ "$i" -lt 20 ] && gen=$((gen + g))
done
echo "20 turns: final prompt $prompt tokens ($gen of them answers 1-19, $((prompt - gen)) user" \
     "turns + template); evaluated in total $pre tokens:" \
     "$(echo "scale=3; $pre / ($prompt - $gen)" | bc)x the user turns + template"
