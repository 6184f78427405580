/* cmd_quantize.c - `mixel quantize IN.gguf OUT.gguf TYPE [-t N] [--imatrix FILE]`:
 * llama-quantize's front door.
 *
 * Converts a GGUF model to one of llama.cpp's file types (Q4_K_M, Q4_0, Q8_0, ...) with the same
 * per-tensor type mix (core/format/quantize_model.h), printing one line per tensor ("name type -> type")
 * and a summary (sizes, bits per weight, seconds). The command line follows llama-quantize:
 * TYPE may be a name in any case or llama.cpp's number, and a trailing number is the thread
 * count; --imatrix FILE (llama-imatrix's GGUF or legacy .dat, core/format/imatrix.h) weighs the
 * quantizers as llama-quantize does, --include-weights / --exclude-weights NAME pick its entries.
 * The types llama-quantize only makes with an imatrix (IQ2_XXS, IQ1_S, ...) are refused with
 * that reason. Exit status: 0 ok, 1 the conversion failed (message on stderr), 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/quant.h"
#include "core/format/imatrix.h"
#include "core/format/quantize_model.h"
#include "cli/cmd.h"
#include "cli/opts.h"
#include "core/base/text.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: mixel quantize [options] IN.gguf OUT.gguf TYPE [THREADS]\n"
            "Converts a GGUF model to a llama.cpp file type with llama-quantize's type mix\n"
            "and quantizers. OUT must differ from IN.\n"
            "  -t, --threads N     threads (default 2)\n"
            "  --imatrix FILE      importance matrix from llama-imatrix (GGUF or legacy .dat):\n"
            "                      weighs Q4_0..Q5_1, Q2_K..Q6_K, the IQ types as llama-quantize\n"
            "  --include-weights NAME  use only the imatrix entries whose name contains NAME\n"
            "                      (repeatable)\n"
            "  --exclude-weights NAME  use no imatrix entry whose name contains NAME (repeatable;\n"
            "                      not together with --include-weights)\n"
            "  -q, --quiet         only the summary, not a line per tensor\n"
            "  --allow-requantize  accepted for llama-quantize scripts; quantized sources are\n"
            "                      always converted (with a note: their error adds up)\n"
            "  -h, --help          this text\n"
            "TYPE (case-insensitive, or llama.cpp's number):\n");
    int n;
    const int *list = mx_ftype_list(&n);
    for (int i = 0; i < n; i++)
        fprintf(f, "  %-9s (%2d)%s\n", mx_ftype_name(list[i]), list[i],
                list[i] == MX_FTYPE_MOSTLY_Q4_K_M ? "  recommended; alias Q4_K"
                : list[i] == MX_FTYPE_MOSTLY_Q5_K_M ? "  alias Q5_K"
                : list[i] == MX_FTYPE_MOSTLY_Q3_K_M ? "  alias Q3_K"
                : mx_ftype_needs_imatrix(list[i]) ? "  needs --imatrix" : "");
    fprintf(f, "IQ1_S, IQ1_M, IQ2_XXS..IQ2_M, IQ3_XXS, IQ3_XS and Q2_K_S need --imatrix (as in\n"
               "llama-quantize).\n");
}

#define MAX_PATTERNS 64

static int parse_threads(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 256)
        return -1;
    *out = (int)v;
    return 0;
}

struct progress {
    bool quiet;
    int64_t n_requant;  /* tensors converted from an already quantized type */
};

/* One line per tensor: "[  i/n] name  src -> dst  (MiB -> MiB)". Names are from the file:
 * made inert before printing. Never cancels. */
static int on_tensor(void *ud, int64_t i, int64_t n, const struct mx_quantize_tensor *t,
                     double seconds) {
    struct progress *pr = ud;
    const struct mx_type_traits *st = mx_type_traits(t->src_type);
    if (t->dst_type != t->src_type && st && st->is_quantized)
        pr->n_requant++;
    if (pr->quiet)
        return 0;
    char name[MX_SANITIZE_MAX(96)];
    size_t len = strlen(t->name);
    mx_text_sanitize(t->name, len > 96 ? 96 : len, name, false);
    const char *how = t->dst_type == t->src_type ? "  (copied)"
                    : t->fallback ? "  (fallback: row length)" : t->weighted ? "  (imatrix)" : "";
    printf("[%4" PRId64 "/%4" PRId64 "] %-40s %-5s -> %-7s %9.2f -> %8.2f MiB%s  %6.1fs\n",
           i + 1, n, name, mx_type_name(t->src_type), mx_type_name(t->dst_type),
           t->src_bytes / 1048576.0, t->dst_bytes / 1048576.0, how, seconds);
    fflush(stdout);
    return 0;
}

int mx_cmd_quantize(int argc, char **argv) {
    const char *pos[4];
    const char *imatrix_path = NULL;
    const char *include[MAX_PATTERNS], *exclude[MAX_PATTERNS];
    int n_include = 0, n_exclude = 0;
    int n_pos = 0, n_threads = 2;
    bool threads_set = false;
    struct progress pr = {false, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            pr.quiet = true;
        } else if (strcmp(a, "--allow-requantize") == 0) {
            /* llama-quantize refuses quantized sources without it; mixel converts them anyway */
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
            if (i + 1 >= argc || parse_threads(argv[i + 1], &n_threads) < 0) {
                mx_cli_err("quantize", "%s needs a thread count 1..256", a);
                return 2;
            }
            threads_set = true;
            i++;
        } else if (strcmp(a, "--imatrix") == 0) {
            if (i + 1 >= argc || !argv[i + 1][0]) {
                mx_cli_err("quantize", "--imatrix needs a file name");
                return 2;
            }
            imatrix_path = argv[++i];
        } else if (strcmp(a, "--include-weights") == 0 || strcmp(a, "--exclude-weights") == 0) {
            bool inc = a[2] == 'i';
            if (i + 1 >= argc || !argv[i + 1][0]) {
                mx_cli_err("quantize", "%s needs a tensor name (or part of one)", a);
                return 2;
            }
            if ((inc ? n_include : n_exclude) >= MAX_PATTERNS) {
                mx_cli_err("quantize", "more than %d %s options", MAX_PATTERNS, a);
                return 2;
            }
            if (inc)
                include[n_include++] = argv[++i];
            else
                exclude[n_exclude++] = argv[++i];
        } else if (a[0] == '-' && a[1] != 0) {
            mx_cli_err("quantize", "unknown option '%s' (see --help)", a);
            return 2;
        } else if (n_pos < 4) {
            pos[n_pos++] = a;
        } else {
            mx_cli_err("quantize", "too many arguments (see --help)");
            return 2;
        }
    }
    if (n_pos < 3) {
        usage(stderr);
        return 2;
    }
    if (n_pos == 4) { /* llama-quantize's trailing nthreads */
        if (threads_set || parse_threads(pos[3], &n_threads) < 0) {
            mx_cli_err("quantize", "'%s' is not a thread count (see --help)", pos[3]);
            return 2;
        }
    }
    if (n_include > 0 && n_exclude > 0) {
        mx_cli_err("quantize", "--include-weights and --exclude-weights cannot be used together "
                   "(as in llama-quantize)");
        return 2;
    }
    if ((n_include > 0 || n_exclude > 0) && !imatrix_path) {
        mx_cli_err("quantize", "--include-weights / --exclude-weights need --imatrix FILE");
        return 2;
    }
    const char *in = pos[0], *out = pos[1];
    int ftype = mx_ftype_from_name(pos[2]);
    if (ftype >= 0 && mx_ftype_needs_imatrix(ftype) && !imatrix_path) {
        mx_cli_err("quantize", "%s needs an importance matrix (--imatrix FILE from llama-imatrix):"
                   " at this few bits per weight the result is garbage without one, and "
                   "llama-quantize refuses it too",
                   mx_ftype_name(ftype));
        return 1;
    }
    if (ftype < 0) {
        fprintf(stderr, "mixel quantize: unknown type '%s'; one of:", mx_safe(pos[2]));
        int n;
        const int *list = mx_ftype_list(&n);
        for (int i = 0; i < n; i++)
            fprintf(stderr, " %s", mx_ftype_name(list[i]));
        fprintf(stderr, "\n");
        return 2;
    }
    if (strcmp(in, out) == 0) {
        mx_cli_err("quantize", "%s: output is the input file; choose another name",
                out);
        return 1;
    }

    struct mx_err err = {0};
    struct mx_imatrix *im = NULL;
    if (imatrix_path) {
        int rc = mx_imatrix_load(imatrix_path, &im, &err);
        if (rc < 0) {
            mx_cli_err("quantize", "%s", mx_err_msg(&err, rc));
            return 1;
        }
        int64_t n_all = im->n_entries;
        mx_imatrix_filter(im, include, n_include, exclude, n_exclude);
        printf("imatrix %s: %s format, %" PRId64 " entries%s", mx_safe(imatrix_path),
               im->legacy ? "legacy .dat" : "GGUF", n_all,
               n_include || n_exclude ? "" : "\n");
        if (n_include || n_exclude)
            printf(", %" PRId64 " kept by --%s-weights\n", im->n_entries,
                   n_include ? "include" : "exclude");
        if (im->chunk_count > 0 || im->dataset)
            printf("imatrix computed on %d chunks of %s\n", (int)im->chunk_count,
                   im->dataset ? mx_safe(im->dataset) : "(unnamed dataset)");
        if (im->n_entries == 0) {
            mx_cli_err("quantize", "%s: no importance matrix entries left after "
                       "--include/--exclude-weights", mx_safe(imatrix_path));
            mx_imatrix_free(im);
            return 1;
        }
    }
    struct mx_quantize_params p = {
        .ftype = ftype, .n_threads = n_threads, .progress = on_tensor, .progress_ud = &pr,
        .imatrix = im, .imatrix_file = imatrix_path,
    };
    struct mx_quantize_stats st;
    printf("quantize %s -> %s as %s (file type %d), %d thread%s\n", mx_safe(in), mx_safe(out),
           mx_ftype_name(ftype), ftype, n_threads, n_threads == 1 ? "" : "s");
    fflush(stdout);
    int rc = mx_quantize_model(in, out, &p, &st, &err);
    mx_imatrix_free(im);
    if (rc < 0) {
        mx_cli_err("quantize", "%s", mx_err_msg(&err, rc));
        return 1;
    }
    double ne = st.n_elements ? (double)st.n_elements : 1.0;
    printf("model size: %10.2f MiB (%.2f bits per weight)\n", st.src_bytes / 1048576.0,
           st.src_bytes * 8.0 / ne);
    printf("quant size: %10.2f MiB (%.2f bits per weight)\n", st.dst_bytes / 1048576.0,
           st.dst_bytes * 8.0 / ne);
    printf("%" PRId64 " tensors, %" PRId64 " converted (%" PRId64 " on a fallback type), "
           "%" PRIu64 " bytes written to %s in %.1f s\n",
           st.n_tensors, st.n_converted, st.n_fallback, st.file_bytes, mx_safe(out), st.seconds);
    if (imatrix_path)
        printf("importance weights: %" PRId64 " tensor%s weighted, %" PRId64 " without an entry "
               "in the imatrix (quantized unweighted)\n", st.n_weighted,
               st.n_weighted == 1 ? "" : "s", st.n_unweighted);
    if (pr.n_requant)
        printf("note: %" PRId64 " tensor%s requantized from a quantized type: the errors of both "
               "quantizations add up; convert from F16/F32 when you can\n", pr.n_requant,
               pr.n_requant == 1 ? " was" : "s were");
    return 0;
}
