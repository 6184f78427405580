/* hf.c - hf:// references: parsing, URLs, and choosing a file from a repo listing (hf.h).
 *
 * Names come from the command line and listings from the network; both are checked byte by byte
 * here before they become a URL or a file name (a path segment ".." would write outside the
 * models folder, a control byte would reach the terminal).
 */
#include "net/hf.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* An owner or repo name: the hub's [A-Za-z0-9._-], not starting with '.' or '-', no "..". */
static int valid_name(const char *s, size_t n) {
    if (n == 0 || n > MX_HF_NAME_MAX || s[0] == '.' || s[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return 0;
        if (c == '.' && i + 1 < n && s[i + 1] == '.')
            return 0;
    }
    return 1;
}

/* A path in a repo: segments of printable ASCII or UTF-8 (no control bytes, no '\\'), never
 * empty, "." or "..", so that its last segment is a safe file name and the URL a plain one. */
static int valid_path(const char *s, size_t n) {
    if (n == 0 || n > MX_HF_PATH_MAX)
        return 0;
    size_t seg = 0; /* start of the current segment */
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '/') {
            size_t len = i - seg;
            if (len == 0 || (len == 1 && s[seg] == '.') ||
                (len == 2 && s[seg] == '.' && s[seg + 1] == '.'))
                return 0;
            seg = i + 1;
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '\\')
            return 0;
    }
    return 1;
}

int mx_hf_parse(const char *s, struct mx_hf_ref *ref, struct mx_err *err) {
    if (!s || !ref)
        return mx_err_set(err, MX_EINVAL, "hf: no reference");
    memset(ref, 0, sizeof *ref);
    if (strncmp(s, "hf://", 5) != 0)
        return mx_err_set(err, MX_EINVAL, "'%.80s' is not an hf:// reference (hf://OWNER/REPO/"
                          "FILE.gguf or hf://OWNER/REPO:QUANT)", s);
    const char *p = s + 5;
    const char *slash = strchr(p, '/');
    if (!slash || !valid_name(p, (size_t)(slash - p)))
        return mx_err_set(err, MX_EINVAL, "%.120s: expected hf://OWNER/REPO/... with OWNER made "
                          "of letters, digits, '.', '_', '-'", s);
    memcpy(ref->owner, p, (size_t)(slash - p));
    const char *r = slash + 1;
    size_t rn = strcspn(r, "/:");
    if (!valid_name(r, rn))
        return mx_err_set(err, MX_EINVAL, "%.120s: expected hf://OWNER/REPO/... with REPO made "
                          "of letters, digits, '.', '_', '-'", s);
    memcpy(ref->repo, r, rn);
    const char *rest = r + rn;
    if (*rest == ':') {
        size_t qn = strlen(rest + 1);
        if (qn == 0 || qn > MX_HF_NAME_MAX || !valid_name(rest + 1, qn))
            return mx_err_set(err, MX_EINVAL, "%.120s: expected a quant after ':' (Q4_K_M, "
                              "Q8_0, ...)", s);
        memcpy(ref->quant, rest + 1, qn);
    } else if (*rest == '/') {
        size_t pn = strlen(rest + 1);
        if (pn && rest[pn] == '/') /* a trailing '/' names a folder, not a file */
            pn = 0;
        if (!valid_path(rest + 1, pn))
            return mx_err_set(err, MX_EINVAL, "%.120s: the file path is empty, too long or has "
                              "'.'/'..' segments or control characters", s);
        memcpy(ref->path, rest + 1, pn);
        if (!mx_hf_is_model_file(ref->path))
            return mx_err_set(err, MX_EINVAL, "%.120s: mixel pull downloads model files: a .gguf "
                              "or a .safetensors", s);
    }
    return 0;
}

/* Appends s percent-encoded (RFC 3986 unreserved bytes and '/' kept) to buf at *o. */
static void put_encoded(char *buf, size_t size, size_t *o, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[4];
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
            tmp[0] = (char)c;
            tmp[1] = '\0';
        } else {
            tmp[0] = '%';
            tmp[1] = hex[c >> 4];
            tmp[2] = hex[c & 15];
            tmp[3] = '\0';
        }
        for (char *t = tmp; *t; t++, (*o)++)
            if (*o + 1 < size)
                buf[*o] = *t;
    }
    if (size)
        buf[*o < size ? *o : size - 1] = '\0';
}

/* The endpoint without a trailing '/', as a length for "%.*s". */
static int endpoint_len(const char *endpoint) {
    size_t n = strlen(endpoint);
    while (n && endpoint[n - 1] == '/')
        n--;
    return (int)n;
}

size_t mx_hf_resolve_url(const char *endpoint, const struct mx_hf_ref *ref, char *buf,
                         size_t size) {
    int n = snprintf(buf, size, "%.*s/%s/%s/resolve/main/", endpoint_len(endpoint), endpoint,
                     ref->owner, ref->repo);
    size_t o = n < 0 ? 0 : (size_t)n;
    put_encoded(buf, size, &o, ref->path);
    return o;
}

size_t mx_hf_api_url(const char *endpoint, const struct mx_hf_ref *ref, char *buf, size_t size) {
    int n = snprintf(buf, size, "%.*s/api/models/%s/%s", endpoint_len(endpoint), endpoint,
                     ref->owner, ref->repo);
    return n < 0 ? 0 : (size_t)n;
}

/* Whether name ends with suffix, ignoring case. */
static int ends_with(const char *name, const char *suffix) {
    size_t n = strlen(name), k = strlen(suffix);
    return n >= k && strcasecmp(name + n - k, suffix) == 0;
}

int mx_hf_is_model_file(const char *name) {
    return ends_with(name, ".gguf") || ends_with(name, ".safetensors");
}

int mx_hf_name_has_quant(const char *name, const char *q) {
    size_t n = strlen(name), k = strlen(q);
    if (k == 0)
        return 0;
    for (size_t i = 0; i + k <= n; i++) {
        if (strncasecmp(name + i, q, k) != 0)
            continue;
        unsigned char before = i ? (unsigned char)name[i - 1] : '/';
        unsigned char after = (unsigned char)name[i + k];
        if (!isalnum(before) && !isalnum(after) && after != '_')
            return 1;
    }
    return 0;
}

/* Whether name is a shard of a split GGUF: "...-00001-of-00003.gguf". */
static int is_shard(const char *name) {
    const char *p = strstr(name, "-of-");
    return p && p - name >= 6 && isdigit((unsigned char)p[-1]) && p[-6] == '-' &&
           isdigit((unsigned char)p[4]);
}

/* Appends "name" to a ", "-separated list in buf (cut with "..." when full). */
static void list_add(char *buf, size_t size, const char *name) {
    size_t o = strlen(buf);
    if (o + 4 >= size)
        return;
    int n = snprintf(buf + o, size - o, "%s%s", o ? ", " : "", name);
    if (n < 0 || (size_t)n >= size - o)
        snprintf(buf + size - 4, 4, "...");
}

int mx_hf_pick(const char *json, size_t len, struct mx_hf_ref *ref, struct mx_err *err) {
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    json_t *sib = root ? json_object_get(root, "siblings") : NULL;
    if (!json_is_array(sib)) {
        json_decref(root);
        return mx_err_set(err, MX_EFORMAT, "%s/%s: the hub's listing has no file list (%s)",
                          ref->owner, ref->repo, root ? "no \"siblings\"" : jerr.text);
    }
    /* two passes without quant: .gguf first, then .safetensors */
    static const char *const kinds[] = {".gguf", ".safetensors"};
    char all[200] = "", found[160] = "";
    const char *pick = NULL;
    int n_found = 0;
    for (int kind = 0; kind < 2 && n_found == 0; kind++) {
        if (kind == 1 && ref->quant[0])
            break; /* a quant tag names a GGUF quantisation */
        for (size_t i = 0; i < json_array_size(sib); i++) {
            const char *name = json_string_value(
                json_object_get(json_array_get(sib, i), "rfilename"));
            if (!name || !ends_with(name, kinds[kind]) || !valid_path(name, strlen(name)))
                continue;
            list_add(all, sizeof all, name);
            if (ref->quant[0] && !mx_hf_name_has_quant(name, ref->quant))
                continue;
            list_add(found, sizeof found, name);
            if (n_found++ == 0)
                pick = name;
        }
    }
    int rc = 0;
    if (n_found == 0) {
        rc = mx_err_set(err, MX_ENOENT, "%s/%s: no %s file%s%s; the repo has: %s", ref->owner,
                        ref->repo, ref->quant[0] ? "GGUF" : "model", ref->quant[0] ? " for " : "",
                        ref->quant, all[0] ? all : "no .gguf or .safetensors files");
    } else if (n_found > 1 && is_shard(pick)) {
        rc = mx_err_set(err, MX_EUNSUP, "%s/%s: %s is a split model (%d files: %s); pull each "
                        "file by its path", ref->owner, ref->repo, ref->quant, n_found, found);
    } else if (n_found > 1) {
        rc = mx_err_set(err, MX_EINVAL, "%s/%s: ambiguous%s%s, %d files match: %s (name one "
                        "with hf://%s/%s/FILE)", ref->owner, ref->repo, ref->quant[0] ? " " : "",
                        ref->quant, n_found, found, ref->owner, ref->repo);
    } else {
        snprintf(ref->path, sizeof ref->path, "%s", pick);
    }
    json_decref(root);
    return rc;
}
