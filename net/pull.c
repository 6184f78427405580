/* pull.c - downloading a model from the hub: HEAD for the LFS headers, a ranged GET into
 * FILE.partial with the SHA-256 computed as bytes arrive, retries with backoff on connection
 * errors, then an atomic rename that never replaces an existing file (pull.h).
 *
 * The hub's resolve URL answers a 302 to its CDN; the first response carries X-Linked-Etag (the
 * LFS oid: the file's SHA-256, quoted) and X-Linked-Size. libcurl follows the redirect and shows
 * this file every response's headers, so those of the hub's own answer are kept whichever hop
 * they came on. Tuned for files of 1-100 GB on links from 1 MB/s to 1 GB/s: writes go straight
 * from curl's buffer to the file, and nothing is read back except a resumed prefix.
 */
#include "net/pull.h"

#include "config.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/base/sha256.h"
#include "core/base/util.h"
#include "net/hf.h"

/* Bytes of an error response's body kept for the message (the hub sends JSON {"error": ...}). */
#define ERR_BODY_MAX 512

/* One pull's state, shared by the requests it makes. */
struct pull {
    const struct mx_pull_opts *o;
    CURL *curl;
    struct curl_slist *headers;  /* Authorization, when a token is set */
    const char *file;            /* last segment of the repo path: the name on disk */

    /* what the responses said (reset per request; linked_* kept from the first hop) */
    long status;                 /* status of the latest response seen */
    char linked_etag[96];        /* X-Linked-Etag of any hop, quotes stripped ("" none) */
    uint64_t linked_size;        /* X-Linked-Size, 0 none */
    char etag[96];               /* ETag of the last response */
    uint64_t content_length;     /* Content-Length of the last response, 0 none */
    uint64_t range_total;        /* the size after '/' in a 206's Content-Range, 0 none */
    char hub_error[160];         /* X-Error-Message of the last response ("" none) */
    char body[ERR_BODY_MAX + 1]; /* the start of an error response's body */
    size_t n_body;

    /* the transfer */
    int fd;                      /* the .partial, open for writing (-1 none) */
    uint64_t off;                /* bytes in the .partial (and in sha) */
    uint64_t start_off;          /* off when this GET started */
    uint64_t total;              /* expected size, 0 unknown */
    struct mx_sha256 sha;        /* digest of the .partial's bytes 0..off */
    bool body_started;           /* the GET's first body byte arrived (status decided) */
    bool restarted;              /* the server ignored our Range: the file starts again */
    int write_errno;             /* a write to the .partial failed (0 none) */
    bool canceled;               /* the progress callback asked to stop */
    double t0;                   /* when the transfer started (mx_time_s) */
    uint64_t t0_off;             /* off at t0, for the rate */
    double last_cb;              /* when progress was last reported */
    bool receiving;              /* a GET of the file runs (progress is worth showing) */
};

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_FAILED_INIT;

/* curl_global_init once per process (it is not thread-safe itself). */
static void curl_once(void) {
    g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Sends a note to the caller (printf style). */
__attribute__((format(printf, 2, 3))) static void note(struct pull *p, const char *fmt, ...) {
    if (!p->o->note)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->o->note(p->o->ud, msg);
}

/* "26.4 GB", "812 MB": decimal units, as model cards use. */
static void fmt_bytes(uint64_t n, char *buf, size_t size) {
    if (n >= 1000000000ull)
        snprintf(buf, size, "%.2f GB", n / 1e9);
    else if (n >= 1000000ull)
        snprintf(buf, size, "%.1f MB", n / 1e6);
    else if (n >= 1000ull)
        snprintf(buf, size, "%.1f KB", n / 1e3);
    else
        snprintf(buf, size, "%llu bytes", (unsigned long long)n);
}

/* Copies a header value (leading spaces, trailing CR/LF, quotes and a W/ prefix removed). */
static void header_value(const char *v, size_t n, char *out, size_t size) {
    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    if (n >= 2 && v[0] == 'W' && v[1] == '/')
        v += 2, n -= 2;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"')
        v++, n -= 2;
    if (n >= size)
        n = size - 1;
    memcpy(out, v, n);
    out[n] = '\0';
}

/* Whether a header line starts with name followed by ':' (any case); *v is then the value. */
static bool header_is(const char *line, size_t n, const char *name, const char **v, size_t *vn) {
    size_t k = strlen(name);
    if (n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0)
        return false;
    *v = line + k + 1;
    *vn = n - k - 1;
    return true;
}

/* libcurl's header callback: every line of every response, redirects included. */
static size_t on_header(char *line, size_t size, size_t nitems, void *ud) {
    struct pull *p = ud;
    size_t n = size * nitems;
    const char *v;
    size_t vn;
    char tmp[96];
    if (n > 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* a new response: what it says replaces the last one's, except the hub's LFS facts */
        const char *sp = memchr(line, ' ', n);
        p->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        p->etag[0] = p->hub_error[0] = '\0';
        p->content_length = p->range_total = 0;
    } else if (header_is(line, n, "X-Linked-Etag", &v, &vn)) {
        if (!p->linked_etag[0])
            header_value(v, vn, p->linked_etag, sizeof p->linked_etag);
    } else if (header_is(line, n, "X-Linked-Size", &v, &vn)) {
        header_value(v, vn, tmp, sizeof tmp);
        if (!p->linked_size)
            p->linked_size = strtoull(tmp, NULL, 10);
    } else if (header_is(line, n, "ETag", &v, &vn)) {
        header_value(v, vn, p->etag, sizeof p->etag);
    } else if (header_is(line, n, "Content-Length", &v, &vn)) {
        header_value(v, vn, tmp, sizeof tmp);
        p->content_length = strtoull(tmp, NULL, 10);
    } else if (header_is(line, n, "Content-Range", &v, &vn)) {
        header_value(v, vn, tmp, sizeof tmp); /* "bytes 100-199/1000" */
        const char *slash = strchr(tmp, '/');
        if (slash && slash[1] != '*')
            p->range_total = strtoull(slash + 1, NULL, 10);
    } else if (header_is(line, n, "X-Error-Message", &v, &vn)) {
        header_value(v, vn, p->hub_error, sizeof p->hub_error);
    }
    return n;
}

/* Starts the .partial again from byte 0 (the server sent the whole file). Returns 0 or -1. */
static int restart_partial(struct pull *p) {
    if (ftruncate(p->fd, 0) != 0 || lseek(p->fd, 0, SEEK_SET) != 0) {
        p->write_errno = errno;
        return -1;
    }
    p->off = p->start_off = p->t0_off = 0;
    mx_sha256_init(&p->sha);
    return 0;
}

/* libcurl's write callback for the GET: a success body goes into the .partial and the digest;
 * the start of an error body is kept for the message. Returning less than n aborts. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
    struct pull *p = ud;
    size_t n = size * nmemb;
    if (p->status != 200 && p->status != 206) {
        size_t k = n < ERR_BODY_MAX - p->n_body ? n : ERR_BODY_MAX - p->n_body;
        memcpy(p->body + p->n_body, data, k);
        p->n_body += k;
        p->body[p->n_body] = '\0';
        return n;
    }
    if (!p->body_started) {
        p->body_started = true;
        if (p->status == 200 && p->start_off > 0) {
            /* asked for a range, got the whole file: the server cannot resume */
            p->restarted = true;
            if (restart_partial(p) != 0)
                return 0;
        }
    }
    for (size_t w = 0; w < n;) {
        ssize_t r = write(p->fd, data + w, n - w);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            p->write_errno = r < 0 ? errno : EIO;
            return 0;
        }
        w += (size_t)r;
    }
    mx_sha256_update(&p->sha, data, n);
    p->off += n;
    return n;
}

/* Reports progress to the caller (at most ten times a second unless final). Returns nonzero
 * when the caller asks to stop. */
static int report(struct pull *p, bool final) {
    double now = mx_time_s();
    if (!p->o->progress || (!final && now - p->last_cb < 0.1))
        return 0;
    p->last_cb = now;
    double el = now - p->t0;
    struct mx_pull_progress pr = {
        .file = p->file, .done = p->off, .total = p->total, .resumed = p->start_off,
        .rate = el >= 0.25 ? (double)(p->off - p->t0_off) / el : 0, .eta_s = -1,
        .receiving = p->receiving,
    };
    if (pr.rate > 0 && pr.total > pr.done)
        pr.eta_s = (double)(pr.total - pr.done) / pr.rate;
    if (p->o->progress(p->o->ud, &pr) != 0)
        p->canceled = true;
    return p->canceled;
}

/* libcurl's progress callback: called while connected even when no byte arrives, so a stalled
 * download still sees a cancel. */
static int on_xfer(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                   curl_off_t ulnow) {
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return report(ud, false);
}

/* Sets up one request on p->curl: url, headers, callbacks, limits. nobody: a HEAD. */
static void setup_request(struct pull *p, const char *url, bool nobody) {
    CURL *c = p->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mixel-pull/" PACKAGE_VERSION);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, p->headers);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, p);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* a link that stalls below 1 KB/s for a minute is dropped and retried */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, p);
    if (nobody) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, p);
    }
    p->status = 0;
    p->n_body = 0;
    p->body[0] = '\0';
}

/* A curl failure worth another try: the connection, not the request, went wrong. */
static bool retryable(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

/* The message of an HTTP error status for what (a "OWNER/REPO/PATH" or "OWNER/REPO"). */
static int http_error(struct pull *p, const char *what, struct mx_err *err) {
    /* the hub's own words (X-Error-Message), control bytes made inert */
    char clean[sizeof p->hub_error];
    size_t k = 0;
    for (const char *s = p->hub_error; *s; s++)
        clean[k++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    clean[k] = '\0';
    bool token = p->headers != NULL;
    switch (p->status) {
    case 401:
    case 403:
        if (!token)
            return mx_err_set(err, MX_EPERM, "%s: %ld %s%s%s: the repo is private or gated; "
                              "accept its terms on the hub and set HF_TOKEN to an access token",
                              what, p->status, p->status == 401 ? "unauthorized" : "forbidden",
                              clean[0] ? ": " : "", clean);
        return mx_err_set(err, MX_EPERM, "%s: %ld %s%s%s: HF_TOKEN was refused, or it has no "
                          "access to this repo (gated: accept its terms on the hub first)", what,
                          p->status, p->status == 401 ? "unauthorized" : "forbidden",
                          clean[0] ? ": " : "", clean);
    case 404:
        return mx_err_set(err, MX_ENOENT, "%s: not found (404)%s%s; check the owner, repo and "
                          "file name%s", what, clean[0] ? ": " : "", clean,
                          token ? "" : " (a private repo needs HF_TOKEN)");
    default:
        return mx_err_set(err, MX_EIO, "%s: HTTP %ld from the server%s%s", what, p->status,
                          clean[0] ? ": " : "", clean);
    }
}

/* Waits seconds, asking the progress callback between slices. Returns nonzero on cancel. */
static int backoff(struct pull *p, double seconds) {
    double end = mx_time_s() + seconds;
    while (mx_time_s() < end) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (report(p, true))
            return 1;
    }
    return 0;
}

/* Runs the request set up on p->curl, trying again after connection errors with a backoff of
 * 1, 2, 4... s; a GET resumes from p->off each time (setup_get re-arms the Range). Returns the
 * last CURLcode. */
static CURLcode perform(struct pull *p, const char *url, bool nobody, const char *what) {
    int retries = p->o->retries < 0 ? 4 : p->o->retries;
    for (int attempt = 0;; attempt++) {
        setup_request(p, url, nobody);
        char range[64];
        if (!nobody) {
            p->start_off = p->off;
            p->body_started = false;
            if (p->off > 0) {
                snprintf(range, sizeof range, "%llu-", (unsigned long long)p->off);
                curl_easy_setopt(p->curl, CURLOPT_RANGE, range);
            }
        }
        uint64_t before = p->off;
        CURLcode rc = curl_easy_perform(p->curl);
        if (rc == CURLE_OK && p->status >= 500 && p->status != 501 && attempt < retries) {
            note(p, "%s: HTTP %ld from the server: retrying in %d s (%d/%d)", what, p->status,
                 1 << attempt, attempt + 1, retries);
        } else if (rc != CURLE_OK && retryable(rc) && !p->canceled && attempt < retries) {
            char got[32];
            fmt_bytes(p->off, got, sizeof got);
            note(p, "%s: %s%s%s: retrying in %d s (%d/%d)", what, curl_easy_strerror(rc),
                 nobody ? "" : " at ", nobody ? "" : got, 1 << attempt, attempt + 1, retries);
        } else {
            return rc;
        }
        if (p->off > before)
            attempt = -1; /* bytes came: the next failure starts the count again */
        if (backoff(p, attempt < 0 ? 1 : 1 << attempt))
            return CURLE_ABORTED_BY_CALLBACK;
    }
}

/* The message for a curl failure that ended the pull. */
static int curl_error(struct pull *p, CURLcode rc, const char *what, const char *partial,
                      struct mx_err *err) {
    if (rc == CURLE_ABORTED_BY_CALLBACK && p->canceled)
        return mx_err_set(err, MX_ECANCELED, "%s: stopped; %s kept, run the same pull again to "
                          "resume", what, partial ? partial : "nothing downloaded yet");
    if (rc == CURLE_WRITE_ERROR && p->write_errno)
        return mx_err_set(err, p->write_errno == ENOSPC ? MX_EFULL : MX_EIO, "%s: %s (%s kept)",
                          partial, strerror(p->write_errno), partial);
    return mx_err_set(err, MX_EIO, "%s: %s%s%s", what, curl_easy_strerror(rc),
                      partial ? "; resumable: run the same pull again (" : "",
                      partial ? "the .partial is kept)" : "");
}

/* Adds the first limit bytes of the file at path to the digest s. Returns 0, MX_EIO (unreadable,
 * shorter than limit) or MX_ENOMEM. */
static int hash_file(const char *path, uint64_t limit, struct mx_sha256 *s, struct mx_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mx_err_set(err, MX_EIO, "%s: %s", path, strerror(errno));
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf) {
        close(fd);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory for hashing", path);
    }
    uint64_t left = limit;
    while (left > 0) {
        ssize_t r = read(fd, buf, left < CHUNK ? (size_t)left : CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return mx_err_set(err, MX_EIO, "%s: %s", path, r < 0 ? strerror(errno) :
                              "shorter than expected");
        }
        mx_sha256_update(s, buf, (size_t)r);
        left -= (uint64_t)r;
    }
    free(buf);
    close(fd);
    return 0;
}

/* Whether s is 64 hex digits (a SHA-256: the hub's LFS oid; git blob ids are 40). */
static bool is_sha256(const char *s) {
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f') ||
              (s[n] >= 'A' && s[n] <= 'F')))
            return false;
    return n == 64;
}

/* Creates dir and its parents (mkdir -p). Returns 0 or MX_EPERM/MX_EIO. */
static int make_dirs(const char *dir, struct mx_err *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp)
        return mx_err_set(err, MX_ERANGE, "%.100s...: path too long", dir);
    for (char *s = tmp + 1;; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return mx_err_set(err, errno == EACCES || errno == EROFS ? MX_EPERM : MX_EIO,
                                  "%s: cannot create the folder (%s)", tmp, strerror(errno));
            *s = c;
            if (!c)
                break;
        }
    }
    return 0;
}

int mx_pull_default_dir(const char *file, char *buf, size_t size, struct mx_err *err) {
    const char *home = getenv("HOME");
    if (!home || !home[0])
        return mx_err_set(err, MX_ENOENT, "HOME is not set: give the folder with --dir");
    size_t n = strlen(file ? file : "");
    int k = -1;
    if (n > 12 && strcasecmp(file + n - 12, ".safetensors") == 0) {
        k = snprintf(buf, size, "%s/stable-diffusion-webui/models/Stable-diffusion", home);
        struct stat st;
        if (k >= 0 && (size_t)k < size && (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)))
            k = -1;
    }
    if (k < 0)
        k = snprintf(buf, size, "%s/models", home);
    if (k < 0 || (size_t)k >= size)
        return mx_err_set(err, MX_ERANGE, "pull: HOME is too long for a path");
    return 0;
}

/* Moves the verified .partial to dest without replacing anything there (RENAME_NOREPLACE, else a
 * hard link then unlink), and syncs the folder. Returns 0, MX_EINVAL (dest appeared meanwhile)
 * or MX_EIO. */
static int publish(const char *partial, const char *dest, const char *dir, struct mx_err *err) {
    if (renameat2(AT_FDCWD, partial, AT_FDCWD, dest, RENAME_NOREPLACE) != 0) {
        if (errno == EEXIST)
            return mx_err_set(err, MX_EINVAL, "%s appeared while downloading: not replaced "
                              "(the download is kept as %s)", dest, partial);
        if (errno != EINVAL && errno != ENOSYS)
            return mx_err_set(err, MX_EIO, "%s: cannot rename into place (%s)", partial,
                              strerror(errno));
        if (link(partial, dest) != 0)
            return mx_err_set(err, errno == EEXIST ? MX_EINVAL : MX_EIO, "%s: cannot move to %s "
                              "(%s)", partial, dest, strerror(errno));
        unlink(partial);
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* The repo listing being received: bounded, so a hostile server cannot fill the memory. */
#define LISTING_MAX (16u << 20)
struct listing {
    char *buf;            /* n bytes received (caller frees) */
    size_t n, cap;
    bool too_big;         /* the server sent more than LISTING_MAX */
};

/* libcurl's write callback for the listing: appends, or aborts the transfer past LISTING_MAX. */
static size_t on_listing(char *data, size_t size, size_t nmemb, void *ud) {
    struct listing *l = ud;
    size_t n = size * nmemb;
    if (n > LISTING_MAX - l->n) {
        l->too_big = true;
        return 0;
    }
    if (l->n + n > l->cap) {
        size_t cap = l->cap ? l->cap : 65536;
        while (cap < l->n + n)
            cap *= 2;
        char *b = realloc(l->buf, cap);
        if (!b)
            return 0;
        l->buf = b;
        l->cap = cap;
    }
    memcpy(l->buf + l->n, data, n);
    l->n += n;
    return n;
}

/* Lists the repo and picks the file of ref->quant (or its one model file) into ref->path.
 * Returns 0 or the errors of mx_pull. */
static int resolve_quant(struct pull *p, const char *endpoint, struct mx_hf_ref *ref,
                         struct mx_err *err) {
    char url[4096], what[256];
    if (mx_hf_api_url(endpoint, ref, url, sizeof url) >= sizeof url)
        return mx_err_set(err, MX_ERANGE, "%s/%s: the URL is too long", ref->owner, ref->repo);
    snprintf(what, sizeof what, "%s/%s", ref->owner, ref->repo);
    struct listing l = {0};
    CURLcode rc = CURLE_OK;
    int retries = p->o->retries < 0 ? 4 : p->o->retries;
    for (int attempt = 0;; attempt++) {
        setup_request(p, url, false);
        curl_easy_setopt(p->curl, CURLOPT_WRITEFUNCTION, on_listing);
        curl_easy_setopt(p->curl, CURLOPT_WRITEDATA, &l);
        l.n = 0;
        rc = curl_easy_perform(p->curl);
        if (rc == CURLE_OK || !retryable(rc) || p->canceled || attempt >= retries)
            break;
        note(p, "%s: %s: retrying in %d s (%d/%d)", what, curl_easy_strerror(rc), 1 << attempt,
             attempt + 1, retries);
        if (backoff(p, 1 << attempt)) {
            rc = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
    }
    int r;
    if (rc == CURLE_WRITE_ERROR && l.too_big)
        r = mx_err_set(err, MX_EFORMAT, "%s: the hub's listing is larger than %u MB", what,
                       LISTING_MAX >> 20);
    else if (rc == CURLE_WRITE_ERROR)
        r = mx_err_set(err, MX_ENOMEM, "%s: out of memory for the hub's listing", what);
    else if (rc != CURLE_OK)
        r = curl_error(p, rc, what, NULL, err);
    else if (p->status != 200)
        r = http_error(p, what, err);
    else
        r = mx_hf_pick(l.buf ? l.buf : "", l.n, ref, err);
    free(l.buf);
    return r;
}

/* The pull itself once the reference is parsed: see mx_pull. */
static int pull_run(struct pull *p, struct mx_hf_ref *ref, const char *endpoint, char **path_out,
                    bool *already, struct mx_err *err) {
    int rc = 0;
    if (!ref->path[0] && (rc = resolve_quant(p, endpoint, ref, err)) != 0)
        return rc;
    const char *slash = strrchr(ref->path, '/');
    p->file = slash ? slash + 1 : ref->path;
    char dir[4096], dest[4700], partial[4720], url[4096], what[720];
    if (p->o->dir) {
        if (snprintf(dir, sizeof dir, "%s", p->o->dir) >= (int)sizeof dir)
            return mx_err_set(err, MX_ERANGE, "--dir: path too long");
    } else if ((rc = mx_pull_default_dir(p->file, dir, sizeof dir, err)) != 0) {
        return rc;
    }
    snprintf(dest, sizeof dest, "%s/%s", dir, p->file);
    snprintf(partial, sizeof partial, "%s.partial", dest);
    snprintf(what, sizeof what, "%s/%s/%s", ref->owner, ref->repo, ref->path);
    if (mx_hf_resolve_url(endpoint, ref, url, sizeof url) >= sizeof url)
        return mx_err_set(err, MX_ERANGE, "%s: the URL is too long", what);

    /* 1. what the hub says about the file: its SHA-256 and size */
    CURLcode crc = perform(p, url, true, what);
    if (crc != CURLE_OK)
        return curl_error(p, crc, what, NULL, err);
    if (p->status != 200)
        return http_error(p, what, err);
    const char *want = is_sha256(p->linked_etag) ? p->linked_etag
                       : is_sha256(p->etag) ? p->etag : NULL;
    char want_hex[65] = "";
    if (want)
        for (int i = 0; i < 64; i++)
            want_hex[i] = (char)(want[i] | 0x20); /* lowercase */
    p->total = p->linked_size ? p->linked_size : p->content_length;

    /* 2. a file already there: the same one, or one never replaced */
    struct stat st;
    if (stat(dest, &st) == 0) {
        char size_s[32];
        fmt_bytes((uint64_t)st.st_size, size_s, sizeof size_s);
        if (want_hex[0]) {
            note(p, "%s exists (%s): checking its SHA-256", dest, size_s);
            struct mx_sha256 s;
            mx_sha256_init(&s);
            uint8_t d[32];
            char hex[65];
            if ((rc = hash_file(dest, (uint64_t)st.st_size, &s, err)) != 0)
                return rc;
            mx_sha256_final(&s, d);
            mx_sha256_to_hex(d, hex);
            if (strcmp(hex, want_hex) != 0)
                return mx_err_set(err, MX_EINVAL, "%s already exists and is a different file "
                                  "(sha256 %.12s..., the hub's %.12s...): not overwritten; move "
                                  "it away or choose another --dir", dest, hex, want_hex);
        } else if (p->total && (uint64_t)st.st_size != p->total) {
            return mx_err_set(err, MX_EINVAL, "%s already exists with another size (%s): not "
                              "overwritten; move it away or choose another --dir", dest, size_s);
        } else if (!p->total) {
            return mx_err_set(err, MX_EINVAL, "%s already exists (the hub gives no size or "
                              "SHA-256 to compare): not overwritten", dest);
        }
        if (already)
            *already = true;
        if (path_out && !(*path_out = strdup(dest)))
            return mx_err_set(err, MX_ENOMEM, "pull: out of memory");
        return 0;
    }

    /* 3. the .partial: resume from its size, locked against a second pull of the same file */
    if ((rc = make_dirs(dir, err)) != 0)
        return rc;
    p->fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (p->fd < 0)
        return mx_err_set(err, errno == EACCES || errno == EROFS ? MX_EPERM : MX_EIO,
                          "%s: cannot write (%s)", partial, strerror(errno));
    if (flock(p->fd, LOCK_EX | LOCK_NB) != 0)
        return mx_err_set(err, MX_EBUSY, "%s: another mixel pull is downloading this file",
                          partial);
    if (fstat(p->fd, &st) != 0)
        return mx_err_set(err, MX_EIO, "%s: %s", partial, strerror(errno));
    p->off = (uint64_t)st.st_size;
    mx_sha256_init(&p->sha);
    if (p->off > 0 && p->total && p->off > p->total) {
        note(p, "%s is larger than the file on the hub: starting again", partial);
        if (restart_partial(p) != 0)
            return mx_err_set(err, MX_EIO, "%s: %s", partial, strerror(p->write_errno));
    } else if (p->off > 0) {
        char got[32];
        fmt_bytes(p->off, got, sizeof got);
        note(p, "resuming %s at %s", p->file, got);
        if ((rc = hash_file(partial, p->off, &p->sha, err)) != 0)
            return rc;
    }
    if (lseek(p->fd, (off_t)p->off, SEEK_SET) < 0)
        return mx_err_set(err, MX_EIO, "%s: %s", partial, strerror(errno));

    /* 4. the rest of the file */
    p->t0 = mx_time_s();
    p->t0_off = p->off;
    if (!p->total || p->off < p->total) {
        p->receiving = true;
        crc = perform(p, url, false, what);
        if (crc == CURLE_OK && p->status == 416 && p->off > 0) {
            /* the range starts at or past the end: what we have is suspect, start over */
            note(p, "the server refused to resume %s (416): starting again", p->file);
            if (restart_partial(p) != 0)
                return mx_err_set(err, MX_EIO, "%s: %s", partial, strerror(p->write_errno));
            crc = perform(p, url, false, what);
        }
        if (p->restarted)
            note(p, "the server does not support resuming (it ignored the Range request): "
                    "downloaded %s from the start", p->file);
        if (crc != CURLE_OK) {
            fsync(p->fd);
            return curl_error(p, crc, what, partial, err);
        }
        if (p->status != 200 && p->status != 206)
            return http_error(p, what, err);
        if (!p->total)
            p->total = p->range_total ? p->range_total : p->off;
    }
    p->receiving = true; /* the final report: 100% even when nothing was left to fetch */
    report(p, true);
    if (p->total && p->off != p->total)
        return mx_err_set(err, MX_EIO, "%s: the server sent %llu of %llu bytes (the .partial is "
                          "kept: run the same pull again to resume)", what,
                          (unsigned long long)p->off, (unsigned long long)p->total);
    if (fsync(p->fd) != 0)
        return mx_err_set(err, errno == ENOSPC ? MX_EFULL : MX_EIO, "%s: %s", partial,
                          strerror(errno));

    /* 5. verify, then into place */
    uint8_t d[32];
    char got_hex[65];
    mx_sha256_final(&p->sha, d);
    mx_sha256_to_hex(d, got_hex);
    if (want_hex[0] && strcmp(got_hex, want_hex) != 0)
        return mx_err_set(err, MX_EFORMAT, "%s: SHA-256 mismatch (got %.16s..., the hub says "
                          "%.16s...): refused, kept as %s; delete it to download again", what,
                          got_hex, want_hex, partial);
    if (!want_hex[0])
        note(p, "not verified: the hub publishes no SHA-256 for %s (not an LFS file)", p->file);
    if ((rc = publish(partial, dest, dir, err)) != 0)
        return rc;
    if (want_hex[0])
        note(p, "sha256 %s verified", got_hex);
    if (path_out && !(*path_out = strdup(dest)))
        return mx_err_set(err, MX_ENOMEM, "pull: out of memory");
    return 0;
}

int mx_pull(const char *refs, const struct mx_pull_opts *opts, char **path, bool *already,
            struct mx_err *err) {
    struct mx_pull_opts defaults = {.retries = -1};
    if (!opts)
        opts = &defaults;
    if (path)
        *path = NULL;
    if (already)
        *already = false;
    struct mx_hf_ref ref;
    int rc = mx_hf_parse(refs, &ref, err);
    if (rc != 0)
        return rc;
    const char *endpoint = opts->endpoint;
    if (!endpoint || !endpoint[0])
        endpoint = getenv("HF_ENDPOINT");
    if (!endpoint || !endpoint[0])
        endpoint = MX_PULL_ENDPOINT;
    if (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0)
        return mx_err_set(err, MX_EINVAL, "endpoint '%.100s': expected an http:// or https:// "
                          "URL", endpoint);
    pthread_once(&g_curl_once, curl_once);
    if (g_curl_init_rc != CURLE_OK)
        return mx_err_set(err, MX_EIO, "pull: libcurl did not start (%s)",
                          curl_easy_strerror(g_curl_init_rc));
    struct pull p = {.o = opts, .fd = -1, .file = ""};
    p.curl = curl_easy_init();
    if (!p.curl)
        return mx_err_set(err, MX_ENOMEM, "pull: libcurl: out of memory");
    const char *token = opts->token ? opts->token : getenv("HF_TOKEN");
    if (token && token[0]) {
        char *h = NULL;
        if (asprintf(&h, "Authorization: Bearer %s", token) < 0 ||
            !(p.headers = curl_slist_append(NULL, h))) {
            free(h);
            curl_easy_cleanup(p.curl);
            return mx_err_set(err, MX_ENOMEM, "pull: out of memory");
        }
        free(h);
    }
    rc = pull_run(&p, &ref, endpoint, path, already, err);
    if (p.fd >= 0)
        close(p.fd);
    curl_slist_free_all(p.headers);
    curl_easy_cleanup(p.curl);
    return rc;
}

/* The adapter of mx_pull_fetch: struct progress -> plain numbers. */
struct fetch_ud {
    int (*progress)(void *ud, uint64_t done, uint64_t total, double rate);
    void *ud;
};

static int fetch_progress(void *ud, const struct mx_pull_progress *p) {
    struct fetch_ud *f = ud;
    return f->progress ? f->progress(f->ud, p->done, p->total, p->rate) : 0;
}

int mx_pull_fetch(const char *ref,
                  int (*progress)(void *ud, uint64_t done, uint64_t total, double rate), void *ud,
                  char **path, struct mx_err *err) {
    struct fetch_ud f = {progress, ud};
    struct mx_pull_opts o = {.retries = -1, .progress = fetch_progress, .ud = &f};
    return mx_pull(ref, &o, path, NULL, err);
}
