# peers_parse.sh - reading the three benchmarks' output, sourced by vs_peers.sh and by the test
# that feeds it recorded output (tests/vs_peers_parse.sh). POSIX sh + sed/awk; every function
# reads one program's output on stdin and prints one number, or "-" when the figure is absent
# (a peer that could not run, a test not asked for), so the table can show n/a.

# mixel bench --json: tokens/s of section KEY (pp, tg, pp_depth, tg_depth).
mixel_tps() {
    v=$(sed -n "s/.*\"$1\": {[^}]*\"tokens_per_s\": \([0-9.]*\)[,}].*/\1/p" | head -n 1)
    echo "${v:--}"
}

# llref bench (../shared/tools/peer-llama/llref.c): FIELD (pp_median, tg_median) of the line
# starting with TAG (BENCH, or BENCH_DEPTH for the run with -d).
llref_field() {
    v=$(grep "^$1 " | sed -n "s/.* $2=\([0-9.]*\).*/\1/p" | head -n 1)
    echo "${v:--}"
}

# ik_llama.cpp's llama-bench -o json: the median of samples_ts of the test whose name is NAME
# (pp512, tg128, tg32@pp16384: llama-bench's own names). The printer writes one field per
# line: "test" comes before "samples_ts" within each object.
ik_tps() {
    awk -v want="$1" '
    function median(s,   n, a, i, j, t) {
        n = split(s, a, /[ ,]+/)
        m = 0
        for (i = 1; i <= n; i++) if (a[i] != "") b[++m] = a[i] + 0
        for (i = 1; i <= m; i++)
            for (j = i + 1; j <= m; j++)
                if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
        if (m == 0) return ""
        return m % 2 ? b[(m + 1) / 2] : (b[m / 2] + b[m / 2 + 1]) / 2
    }
    /"test":/ { t = $0; sub(/.*"test": *"/, "", t); sub(/".*/, "", t); cur = t }
    /"samples_ts":/ && cur == want && out == "" {
        s = $0; sub(/.*\[/, "", s); sub(/\].*/, "", s); out = median(s)
    }
    END { print (out == "" ? "-" : out) }'
}

# The table from a rounds file: one line per round, "LABEL mixel llama.cpp ik" per row kind
# (values "-" when absent). Prints per LABEL (in first-seen order) the medians over rounds and
# the ratios mixel / llama.cpp and mixel / ik_llama.cpp (n/a where a side is missing).
peers_table() {
    awk '
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++)
            for (j = i + 1; j <= n; j++)
                if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        if (n == 0) return ""
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function add(k, c, v) { if (v != "-" && v != "") vals[k, c] = vals[k, c] " " v }
    function fmt(v) { return v == "" ? "n/a" : sprintf("%.1f", v) }
    function ratio(a, b) {
        return (a == "" || b == "" || b + 0 == 0) ? "n/a" : sprintf("%.2fx", a / b)
    }
    NF == 4 {
        if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
        add($1, 1, $2); add($1, 2, $3); add($1, 3, $4)
    }
    END {
        f = "%-16s %10s %10s %13s %16s %9s\n"
        printf f, "tokens/s", "mixel", "llama.cpp", "ik_llama.cpp", "mixel/llama.cpp", "mixel/ik"
        for (i = 1; i <= n; i++) {
            k = order[i]
            m = median(vals[k, 1]); l = median(vals[k, 2]); q = median(vals[k, 3])
            printf f, k, fmt(m), fmt(l), fmt(q), ratio(m, l), ratio(m, q)
        }
    }'
}
