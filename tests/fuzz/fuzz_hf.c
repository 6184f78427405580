/* fuzz_hf.c - libFuzzer target for the hf:// reference parser and the hub-listing picker
 * (net/hf.c), both fed by untrusted bytes (the command line, the network). The input's first line
 * is a reference, the rest a listing. Checked: no crash or leak; a parsed reference has a valid
 * owner and repo and its URLs are NUL-terminated; a picked path is a model file with no "..", no
 * empty segment and no control byte (it becomes a file name in the models folder).
 * Built by `make check-fuzz` (tests/fuzz/fuzz.am). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/hf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts unless path is safe to join to a folder. */
static void check_path(const char *p) {
    if (!p[0] || p[0] == '/' || strstr(p, "//") || !mx_hf_is_model_file(p))
        abort();
    for (const char *s = p; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '\\')
            abort();
    const char *seg = p;
    for (;;) {
        size_t n = strcspn(seg, "/");
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            abort();
        if (!seg[n])
            break;
        seg += n + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *nl = memchr(data, '\n', size);
    size_t n_ref = nl ? (size_t)(nl - (const char *)data) : size;
    char *ref_s = malloc(n_ref + 1);
    if (!ref_s)
        return 0;
    memcpy(ref_s, data, n_ref);
    ref_s[n_ref] = '\0';
    struct mx_hf_ref ref;
    struct mx_err err = {0};
    if (mx_hf_parse(ref_s, &ref, &err) == 0) {
        char url[64];
        mx_hf_resolve_url("http://127.0.0.1:1/", &ref, url, sizeof url);
        mx_hf_api_url("http://h", &ref, url, sizeof url);
        if (strlen(url) >= sizeof url || !ref.owner[0] || !ref.repo[0])
            abort();
        if (ref.path[0])
            check_path(ref.path);
        const char *json = nl ? nl + 1 : "";
        size_t n_json = nl ? size - n_ref - 1 : 0;
        ref.path[0] = '\0';
        if (mx_hf_pick(json, n_json, &ref, &err) == 0)
            check_path(ref.path);
    }
    free(ref_s);
    return 0;
}
